//! The `aigw-metadata` request header: a JSON object of tags.

use http::{Extensions, HeaderMap};
use tower_ai_core::{CallerTags, headers};

/// At most this many tags per request.
pub(crate) const MAX_TAGS: usize = 16;
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 256;

/// The tags of a request (from its headers, or those a layer in front removed and left
/// in the extensions), or why the header is bad.
pub(crate) fn parse(
    h: &HeaderMap,
    ext: &Extensions,
) -> Result<Vec<(String, String)>, &'static str> {
    let mut tags = from_header(h, ext)?;
    // The caller's own tags (a virtual key's): they win over the client's.
    if let Some(CallerTags(mine)) = ext.get::<CallerTags>() {
        tags.retain(|(k, _)| !mine.iter().any(|(m, _)| m == k));
        tags.extend(mine.iter().cloned());
    }
    Ok(tags)
}

fn from_header(h: &HeaderMap, ext: &Extensions) -> Result<Vec<(String, String)>, &'static str> {
    let Some(v) = headers::METADATA.get_in(h, ext) else {
        return Ok(Vec::new());
    };
    const BAD: &str = "aigw-metadata must be a JSON object of at most 16 string, number or boolean values (keys up to 64 bytes, values up to 256)";
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(v.as_bytes()).map_err(|_| BAD)?;
    if map.len() > MAX_TAGS {
        return Err(BAD);
    }
    let mut tags = Vec::with_capacity(map.len());
    for (k, v) in map {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(BAD),
        };
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return Err(BAD);
        }
        tags.push((k, v));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn parse_h(h: &HeaderMap) -> Result<Vec<(String, String)>, &'static str> {
        parse(h, &Extensions::new())
    }

    fn with(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("aigw-metadata", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn a_callers_tags_join_and_win() {
        let mut ext = Extensions::new();
        ext.insert(CallerTags(
            vec![("tenant".to_owned(), "acme".to_owned())].into(),
        ));
        let t = parse(&with(r#"{"tenant":"evil","user":"u1"}"#), &ext).unwrap();
        assert_eq!(
            t,
            vec![
                ("user".to_owned(), "u1".to_owned()),
                ("tenant".to_owned(), "acme".to_owned())
            ]
        );
        assert_eq!(parse(&HeaderMap::new(), &ext).unwrap().len(), 1);
    }

    #[test]
    fn tags() {
        assert_eq!(
            parse(&HeaderMap::new(), &Extensions::new()).unwrap(),
            vec![]
        );
        let t = parse_h(&with(r#"{"team":"search","user":42,"beta":true}"#)).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.contains(&("user".into(), "42".into())));
        for bad in [
            r#"[1]"#,
            "nope",
            r#"{"a":{"b":1}}"#,
            r#"{"a":null}"#,
            r#"{"":"x"}"#,
        ] {
            assert!(parse_h(&with(bad)).is_err(), "{bad}");
        }
        let many = (0..17)
            .map(|i| format!("\"k{i}\":1"))
            .collect::<Vec<_>>()
            .join(",");
        let mut h = HeaderMap::new();
        h.insert(
            "cf-aig-metadata",
            HeaderValue::try_from(format!("{{{many}}}")).unwrap(),
        );
        assert!(parse_h(&h).is_err());
    }
}
