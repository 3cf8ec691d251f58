//! `gateway keys create`, the binary itself: the token printed once, the TOML with its
//! hash only, and a bad name refused.

use std::process::Command;

use tower_ai_auth::TokenHash;
use tower_ai_gateway::Config;

#[test]
fn keys_create_prints_a_token_and_the_toml_with_its_hash() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["keys", "create", "--name", "cli-team"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("the token is printed");
    assert!(token.starts_with("aigw_") && token.len() == 69, "{token}");
    assert_eq!(text.matches(token).count(), 1, "printed once");
    let toml = &text[text.find("[[auth.keys]]").unwrap()..];
    assert!(toml.contains(&TokenHash::of(token).to_hex()));
    // The printed TOML is a working configuration.
    let config = Config::from_toml(&format!("[auth]\nenabled = true\n{toml}")).unwrap();
    assert_eq!(config.auth.keys[0].name, "cli-team");

    // Two runs, two tokens.
    let again = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["keys", "create", "--name", "cli-team"])
        .output()
        .unwrap();
    assert!(!String::from_utf8(again.stdout).unwrap().contains(token));

    let bad = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["keys", "create", "--name", "no spaces"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8(bad.stderr)
            .unwrap()
            .contains("letters, digits")
    );
}
