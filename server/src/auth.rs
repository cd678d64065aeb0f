//! Bearer tokens and their scopes.
//!
//! A token grants scopes: view names, `metrics`, or `*` (everything). Tokens come from the
//! config file (`[[http.tokens]]`) and from `SHOPDIFF_TOKENS` (`token=scope,scope;token2=*`).
//! When no token is configured and the server listens on loopback only, access is open;
//! binding any other address without tokens is refused at start unless anonymous access is
//! asked for explicitly. Tokens are compared in constant time and never logged.

use std::collections::HashMap;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token given where one is required (401).
    Missing,
    /// A token no one configured (401).
    Unknown,
    /// The token lacks this scope (403).
    Scope(String),
}

/// The configured tokens; `open` when no token is required.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: HashMap<String, Vec<String>>,
    open: bool,
}

fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `token=scope,scope;token2=*`.
pub fn parse_tokens(spec: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    for (i, part) in spec
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        let Some((tok, scopes)) = part.split_once('=') else {
            return Err(format!(
                "token entry {} has no `=`: write token=scope,scope (or token=*)",
                i + 1
            ));
        };
        let tok = tok.trim();
        if tok.len() < 8 {
            return Err(format!(
                "token entry {} is shorter than 8 characters",
                i + 1
            ));
        }
        let scopes: Vec<String> = scopes
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if scopes.is_empty() {
            return Err(format!("token entry {} has no scope", i + 1));
        }
        out.push((tok.to_string(), scopes));
    }
    Ok(out)
}

impl Auth {
    /// No token required.
    pub fn open() -> Auth {
        Auth {
            tokens: HashMap::new(),
            open: true,
        }
    }

    /// Tokens required.
    pub fn with_tokens(tokens: Vec<(String, Vec<String>)>) -> Auth {
        Auth {
            tokens: tokens.into_iter().collect(),
            open: false,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    fn scopes(&self, token: Option<&str>) -> Result<&Vec<String>, Denied> {
        let Some(t) = token else {
            return Err(Denied::Missing);
        };
        self.tokens
            .iter()
            .find(|(k, _)| same(k, t))
            .map(|(_, v)| v)
            .ok_or(Denied::Unknown)
    }

    /// Is `token` allowed `scope` (a view name or `metrics`)?
    pub fn check(&self, token: Option<&str>, scope: &str) -> Result<(), Denied> {
        if self.open {
            return Ok(());
        }
        let scopes = self.scopes(token)?;
        if scopes.iter().any(|s| s == "*" || s == scope) {
            Ok(())
        } else {
            Err(Denied::Scope(scope.to_string()))
        }
    }

    /// Is `token` any valid token?
    pub fn check_any(&self, token: Option<&str>) -> Result<(), Denied> {
        if self.open {
            return Ok(());
        }
        self.scopes(token).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_refusals() {
        let a = Auth::with_tokens(parse_tokens("reader-token=rfm,cohorts; admin-token=*").unwrap());
        assert_eq!(a.check(None, "rfm"), Err(Denied::Missing));
        assert_eq!(a.check(Some("nope-nope"), "rfm"), Err(Denied::Unknown));
        assert_eq!(a.check(Some("reader-token"), "rfm"), Ok(()));
        assert_eq!(
            a.check(Some("reader-token"), "fraud_alerts"),
            Err(Denied::Scope("fraud_alerts".into()))
        );
        assert_eq!(a.check(Some("admin-token"), "metrics"), Ok(()));
        assert!(Auth::open().check(None, "rfm").is_ok());
        assert!(parse_tokens("short=*").is_err());
        assert!(parse_tokens("no-equals-sign").is_err());
    }
}
