//! Secrets that stay out of `argv` (visible to every user in `ps`) and out of messages: token,
//! password and Kafka credential files, `PGPASSWORD`, and URLs printed with their password
//! replaced by `***`.

use std::path::Path;

/// The contents of a secret file, without its trailing newline; the error names the file.
pub fn read_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// The non-empty lines of a secret file that are not `#` comments (tokens, Kafka options).
pub fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_file(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

pub use shopdiff_connectors::postgres::{redact_url, with_password};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_and_put_in() {
        assert_eq!(
            redact_url("postgres://shop:s3cr3t@db:5432/shop"),
            "postgres://shop:***@db:5432/shop"
        );
        assert_eq!(
            redact_url("postgres://shop@db/shop"),
            "postgres://shop@db/shop"
        );
        assert_eq!(
            redact_url("host=db user=shop password=s3cr3t"),
            "host=db user=shop password=***"
        );
        assert_eq!(
            with_password("postgres://shop@db:5432/shop", "p@ss word"),
            "postgres://shop:p%40ss%20word@db:5432/shop"
        );
        assert_eq!(
            with_password("postgres://shop:kept@db/shop", "other"),
            "postgres://shop:kept@db/shop"
        );
        assert_eq!(
            with_password("host=db user=shop", "pw"),
            "host=db user=shop password='pw'"
        );
    }

    #[test]
    fn secret_files_lose_their_newline_and_comments() {
        let dir = std::env::temp_dir().join(format!("shopdiff-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("tokens");
        std::fs::write(&f, "# readers\nreader-0001=rfm\n\nadmin-0001=*\n").unwrap();
        assert_eq!(read_lines(&f).unwrap(), ["reader-0001=rfm", "admin-0001=*"]);
        std::fs::write(&f, "pw\n").unwrap();
        assert_eq!(read_file(&f).unwrap(), "pw");
        let missing = dir.join("missing");
        let e = read_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
