// Shared by the targets: cutting the fuzzer's input into frames.

/// Splits `data` into the stream and the frames it is cut into: the first byte says how
/// many cut sizes follow (0 to 15), each of the next bytes is one size (1 to 256), used
/// in turn until the stream is used up. Returns the frames (concatenated, the stream).
pub fn frames(data: &[u8]) -> Vec<&[u8]> {
    let Some((&n, rest)) = data.split_first() else {
        return Vec::new();
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, mut stream) = rest.split_at(n);
    let mut out = Vec::new();
    let mut i = 0;
    while !stream.is_empty() {
        let size = match sizes.get(i % sizes.len().max(1)) {
            Some(&s) => usize::from(s) + 1,
            None => stream.len(),
        };
        let (frame, tail) = stream.split_at(size.min(stream.len()));
        out.push(frame);
        stream = tail;
        i += 1;
    }
    out
}
