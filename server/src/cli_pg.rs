//! The PostgreSQL flags of the command line, kept out of `cli.rs`:
//! `shopdiff generate --postgres URL [--pg-changes] [--pg-speed X] [--pg-replace]` loads the
//! generated tables (and replays their changes) into PostgreSQL; [`PgRunArgs`] holds the flags of
//! `shopdiff run --postgres URL` and turns them into a [`CdcConfig`].

use clap::Args;
use shopdiff_connectors::postgres::load::{load_dir, LoadOptions};
use shopdiff_connectors::postgres::CdcConfig;
use shopdiff_schemas::Table;
use std::path::Path;

/// `shopdiff generate` flags for PostgreSQL.
#[derive(Args, Debug, Clone, Default)]
pub struct PgGenerateArgs {
    /// Also load the generated tables into PostgreSQL at this URL, creating `products`,
    /// `customers` and `ip_reputation` with the contract's DDL when they do not exist.
    #[arg(long = "postgres", value_name = "URL")]
    pub postgres: Option<String>,
    /// With --postgres: then replay the generated table changes as transactions (one per tick).
    #[arg(long, requires = "postgres")]
    pub pg_changes: bool,
    /// With --pg-changes: simulated seconds per real second (0: as fast as possible).
    #[arg(long, default_value_t = 0.0, requires = "pg_changes")]
    pub pg_speed: f64,
    /// With --postgres: drop the three tables first.
    #[arg(long, requires = "postgres")]
    pub pg_replace: bool,
}

/// Loads the recorded stream just written to `dir` when `--postgres` was given.
pub fn after_generate(a: &PgGenerateArgs, dir: &Path) -> anyhow::Result<()> {
    let Some(url) = &a.postgres else {
        return Ok(());
    };
    let opts = LoadOptions {
        replace: a.pg_replace,
        changes: a.pg_changes,
        speed: a.pg_speed,
        until: None,
    };
    let stats = load_dir(url, dir, &opts)?;
    let rows: Vec<String> = Table::ALL
        .iter()
        .zip(stats.rows)
        .map(|(t, n)| format!("{n} {}", t.name()))
        .collect();
    eprintln!(
        "loaded {} into {} ({} refused); {} changes in {} transactions",
        rows.join(", "),
        crate::secrets::redact_url(url),
        stats.refused,
        stats.changes,
        stats.txns
    );
    Ok(())
}

/// `shopdiff run` flags for PostgreSQL CDC.
#[derive(Args, Debug, Clone, Default)]
pub struct PgRunArgs {
    /// Read the tables from PostgreSQL by logical replication (snapshot, then changes).
    #[arg(long = "postgres", value_name = "URL")]
    pub postgres: Option<String>,
    /// Replication slot name.
    #[arg(long, default_value = "shopdiff")]
    pub pg_slot: String,
    /// Publication name (created for the three tables when missing).
    #[arg(long, default_value = "shopdiff")]
    pub pg_publication: String,
    /// Drop and re-create the slot and copy the tables anew when it cannot be resumed (it
    /// exists from an earlier run, was dropped, or was invalidated).
    #[arg(long)]
    pub pg_resnapshot: bool,
}

impl PgRunArgs {
    /// The CDC configuration, when `--postgres` was given.
    pub fn cdc_config(&self) -> Option<CdcConfig> {
        let url = self.postgres.as_ref()?;
        let mut cfg = CdcConfig::new(url);
        cfg.slot = self.pg_slot.clone();
        cfg.publication = self.pg_publication.clone();
        cfg.resnapshot = self.pg_resnapshot;
        Some(cfg)
    }
}
