//! Who may call what: the bearer tokens (from flags, environment variables or files) and the
//! CORS origins, checked at start-up so that a bad value stops the server rather than opening it.

use std::fmt;
use std::path::PathBuf;

/// Bearer tokens and CORS origins. With no token every route is open; see [`crate::http::auth`]
/// for which routes each token opens.
///
/// A token comes from its flag, its environment variable, or a file (for secrets mounted by
/// an orchestrator); the values are hidden from `--help` and from `Debug`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Bearer token for the management routes (datasets, models, jobs, experiments); it also
    /// opens the inference routes. Unset: the management routes are open.
    #[arg(long, env = "MLP_LAB_MANAGEMENT_TOKEN", hide_env_values = true,
          value_parser = Token::unchecked, conflicts_with = "management_token_file")]
    pub management_token: Option<Token>,

    /// File holding the management token (surrounding whitespace ignored).
    #[arg(long, env = "MLP_LAB_MANAGEMENT_TOKEN_FILE")]
    pub management_token_file: Option<PathBuf>,

    /// Bearer token for the inference routes only (POST /v1/models/{m}/predict and /v2/…).
    /// Unset: the inference routes are open.
    #[arg(long, env = "MLP_LAB_INFERENCE_TOKEN", hide_env_values = true,
          value_parser = Token::unchecked, conflicts_with = "inference_token_file")]
    pub inference_token: Option<Token>,

    /// File holding the inference token (surrounding whitespace ignored).
    #[arg(long, env = "MLP_LAB_INFERENCE_TOKEN_FILE")]
    pub inference_token_file: Option<PathBuf>,

    /// Browser origin allowed to call the API (CORS), e.g. `https://app.example.com`; repeat the
    /// flag or separate with commas. None: no CORS headers at all.
    #[arg(long = "cors-origin", env = "MLP_LAB_CORS_ORIGINS", value_delimiter = ',',
          value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
}

/// Why the configured tokens cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A token file cannot be read.
    #[error("cannot read the {scope} token file {path}: {source}")]
    TokenFile {
        /// `management` or `inference`.
        scope: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A token is empty or holds characters a header cannot carry.
    #[error("the {scope} token {origin} is unusable: {message}")]
    BadToken {
        /// `management` or `inference`.
        scope: &'static str,
        /// Where it came from, e.g. `file /run/secrets/token`.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Both tokens are the same, so the inference token would open every route.
    #[error("the management and inference tokens are the same; give them different values")]
    SameTokens,
}

impl Access {
    /// The management and inference tokens in force, reading token files.
    ///
    /// # Errors
    /// [`AccessError`] for an unreadable file, an empty or malformed token, or equal tokens.
    pub fn tokens(&self) -> Result<(Option<Token>, Option<Token>), AccessError> {
        let management = resolve(
            "management",
            self.management_token.as_ref(),
            self.management_token_file.as_deref(),
        )?;
        let inference = resolve(
            "inference",
            self.inference_token.as_ref(),
            self.inference_token_file.as_deref(),
        )?;
        if let (Some(m), Some(i)) = (&management, &inference) {
            if m == i {
                return Err(AccessError::SameTokens);
            }
        }
        Ok((management, inference))
    }
}

fn resolve(
    scope: &'static str,
    token: Option<&Token>,
    file: Option<&std::path::Path>,
) -> Result<Option<Token>, AccessError> {
    if let Some(token) = token {
        // Checked here rather than by clap, whose errors quote the refused value.
        return Token::parse(token.expose())
            .map(Some)
            .map_err(|message| AccessError::BadToken {
                scope,
                origin: format!(
                    "from --{scope}-token or MLP_LAB_{}_TOKEN",
                    scope.to_ascii_uppercase()
                ),
                message,
            });
    }
    let Some(path) = file else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|source| AccessError::TokenFile {
        scope,
        path: path.to_owned(),
        source,
    })?;
    Token::parse(text.trim())
        .map(Some)
        .map_err(|message| AccessError::BadToken {
            scope,
            origin: format!("in {}", path.display()),
            message,
        })
}

/// A bearer token: at least one visible ASCII character, no spaces. `Debug` hides it and it
/// has no `Display`, so it cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Checks `s` as a token.
    ///
    /// # Errors
    /// What is wrong with it, for the start-up message.
    pub fn parse(s: &str) -> Result<Token, String> {
        if s.is_empty() {
            return Err("a token must not be empty".to_owned());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "a token may hold only visible ASCII characters, without spaces".to_owned(),
            );
        }
        Ok(Token(s.to_owned()))
    }

    /// For clap: the value with surrounding whitespace trimmed (as from a file), not yet
    /// checked. [`Access::tokens`] checks it: a refusal from clap would quote the secret in its
    /// error message.
    ///
    /// # Errors
    /// Never.
    pub fn unchecked(s: &str) -> Result<Token, std::convert::Infallible> {
        Ok(Token(s.trim().to_owned()))
    }

    /// The secret itself, for hashing; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// An origin as browsers send it: `scheme://host[:port]`, http or https, nothing after; in
/// the form a browser serializes it, so it can be compared byte for byte with an `Origin`
/// header: lowercase, the scheme's default port (80, 443) left out, an IPv6 host in brackets
/// in its canonical form.
fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Err("`*` is not allowed; list each origin that may call the API".to_owned());
    }
    let lower = s.to_ascii_lowercase();
    let (scheme, rest, default_port) = if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest, 443)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        ("http", rest, 80)
    } else {
        return Err(format!(
            "`{s}` is not an origin; write it as https://host[:port]"
        ));
    };
    let not_origin =
        |why: &str| format!("`{s}` is not an origin ({why}); write it as http[s]://host[:port]");
    if rest.contains(['/', '?', '#']) {
        return Err(not_origin(
            "after the scheme comes only host[:port]: no path, no trailing slash",
        ));
    }
    if rest.contains('@') {
        return Err(not_origin("an origin has no user info"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (addr, after) = bracketed
            .split_once(']')
            .ok_or_else(|| not_origin("an IPv6 address needs its closing `]`"))?;
        let addr: std::net::Ipv6Addr = addr
            .parse()
            .map_err(|_| not_origin("the host in brackets is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| not_origin("only `:port` may follow an IPv6 address"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.is_empty() {
            return Err(not_origin("the host is missing"));
        }
        if host.ends_with('.') {
            return Err(not_origin(
                "a trailing dot on the host is not what browsers send",
            ));
        }
        if !host.split('.').all(label_ok) {
            return Err(not_origin(
                "the host must be a name of letters, digits, `-` and dots, an IPv4 address or \
                 an IPv6 address in brackets",
            ));
        }
        (host.to_owned(), port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            let n = (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .filter(|&n| n != 0)
                .ok_or_else(|| not_origin("the port must be a number from 1 to 65535"))?;
            (n != default_port).then_some(n)
        }
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    #[test]
    fn tokens_come_from_flags_or_files_and_stay_out_of_debug() {
        let dir = std::env::temp_dir().join(format!("mlp-lab-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let file = dir.join("inference");
        std::fs::write(&file, "from-a-file\n").expect("write the token file");
        let config = Config::try_parse_from([
            "mlp-lab",
            "--management-token",
            "s3cret-management",
            "--inference-token-file",
            file.to_str().expect("a UTF-8 path"),
        ])
        .expect("parses");
        let (management, inference) = config.access.tokens().expect("usable tokens");
        assert_eq!(
            management.map(|t| t.expose().to_owned()).as_deref(),
            Some("s3cret-management")
        );
        assert_eq!(
            inference.map(|t| t.expose().to_owned()).as_deref(),
            Some("from-a-file")
        );
        assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn empty_equal_or_unreadable_tokens_are_refused() {
        for (flag, value) in [
            ("--management-token", ""),
            ("--management-token", " \n"),
            ("--inference-token", "has space"),
            ("--inference-token", "s3cret\u{7f}"),
        ] {
            let config = Config::try_parse_from(["mlp-lab", flag, value]).expect("parses");
            let refused = config.access.tokens().expect_err("refused");
            assert!(matches!(refused, AccessError::BadToken { .. }), "{refused}");
            // The refusal is logged at start-up: it must not quote the secret.
            assert!(!refused.to_string().contains("s3cret"), "{refused}");
            assert!(!refused.to_string().contains("has space"), "{refused}");
        }
        // A trailing newline (a secret mounted from a file into the variable) is trimmed.
        let config =
            Config::try_parse_from(["mlp-lab", "--management-token", "abc\n"]).expect("parses");
        let (management, _) = config.access.tokens().expect("usable");
        assert_eq!(management.expect("set").expose(), "abc");
        let same = Config::try_parse_from([
            "mlp-lab",
            "--management-token",
            "abc",
            "--inference-token",
            "abc",
        ])
        .expect("parses");
        assert!(matches!(same.access.tokens(), Err(AccessError::SameTokens)));
        let missing = Config::try_parse_from([
            "mlp-lab",
            "--management-token-file",
            "/nonexistent/mlp-lab/token",
        ])
        .expect("parses");
        assert!(matches!(
            missing.access.tokens(),
            Err(AccessError::TokenFile { .. })
        ));
        let dir = std::env::temp_dir().join(format!("mlp-lab-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let empty = dir.join("token");
        std::fs::write(&empty, " \n").expect("write the token file");
        let config = Config::try_parse_from([
            "mlp-lab",
            "--management-token-file",
            empty.to_str().expect("a UTF-8 path"),
        ])
        .expect("parses");
        assert!(matches!(
            config.access.tokens(),
            Err(AccessError::BadToken { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cors_origins_are_listed_exactly_and_never_a_wildcard() {
        let config = Config::try_parse_from([
            "mlp-lab",
            "--cors-origin",
            "https://App.example.com,http://localhost:3000",
            "--cors-origin",
            "http://[::1]:8000",
        ])
        .expect("parses");
        assert_eq!(
            config.access.cors_origins,
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://[::1]:8000"
            ]
        );
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "https://a/b",
            "",
        ] {
            assert!(
                Config::try_parse_from(["mlp-lab", "--cors-origin", bad]).is_err(),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn origins_are_normalized_as_browsers_send_them() {
        for (given, stored) in [
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://x:80", "http://x"),
            ("http://x:080", "http://x"),
            ("https://x:80", "https://x:80"),
            ("http://x:443", "http://x:443"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]", "http://[::1]"),
            ("http://[0:0:0:0:0:0:0:1]:80", "http://[::1]"),
            ("https://[2001:DB8::1]:8443", "https://[2001:db8::1]:8443"),
            (" HTTPS://My-App.Example.COM ", "https://my-app.example.com"),
        ] {
            assert_eq!(parse_origin(given).as_deref(), Ok(stored), "{given}");
        }
        for (bad, says) in [
            ("http://a:b:c", "port"),
            ("http://a:b", "port"),
            ("http://a:", "port"),
            ("http://a:0", "port"),
            ("http://a:65536", "port"),
            ("http://a:+80", "port"),
            ("http://[", "`]`"),
            ("http://[::1", "`]`"),
            ("http://[nope]", "IPv6"),
            ("http://[::1]x", "`:port`"),
            ("http://[::1]:", "port"),
            ("http://app.example.com.", "trailing dot"),
            ("http://a..b", "host"),
            ("http://-a", "host"),
            ("http://a_b", "host"),
            ("http://", "missing"),
            ("http://:80", "missing"),
            ("http://user@a", "user info"),
            ("http://a?x", "no path"),
            ("ftp://a", "https://host"),
        ] {
            let error = parse_origin(bad).expect_err(bad);
            assert!(error.contains(says), "{bad}: {error}");
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_origins_are_refused_by_the_flag_too() {
        for bad in ["http://a:b:c", "http://[", "http://x."] {
            assert!(
                Config::try_parse_from(["mlp-lab", "--cors-origin", bad]).is_err(),
                "{bad} parsed"
            );
        }
    }
}
