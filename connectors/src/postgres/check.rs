//! Control-plane SQL on a plain connection: table checks, the publication, the slot's state.

use super::CdcError;
use postgres::Client;
use shopdiff_schemas::tables::{ColType, Table};

/// The server's message, or the error with its causes (`error connecting to server: Connection
/// refused (os error 111)`).
pub(crate) fn pg_message(e: &postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return d.message().to_string();
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Connects a plain (non-replication) session, with the URL's `sslmode`.
pub(crate) fn connect(url: &str) -> Result<Client, CdcError> {
    super::tls::connect(url)
}

pub(crate) fn sql_err(context: impl Into<String>) -> impl FnOnce(postgres::Error) -> CdcError {
    let context = context.into();
    move |e| CdcError::Sql {
        context,
        message: pg_message(&e),
    }
}

/// What the check found for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: Table,
    /// Upstream columns outside the contract's DDL (tolerated, ignored).
    pub extra_columns: Vec<String>,
}

/// The PostgreSQL types (`format_type` without modifiers) accepted for a DDL column type.
fn accepted(t: ColType) -> &'static [&'static str] {
    match t {
        ColType::Text => &["text", "character varying", "character"],
        ColType::Decimal => &["numeric", "integer", "bigint", "smallint"],
        ColType::Integer => &["integer", "bigint", "smallint"],
        ColType::Boolean => &["boolean"],
        ColType::TextArray => &["text[]", "character varying[]"],
        ColType::Jsonb => &["jsonb", "json"],
        ColType::Timestamp => &["timestamp without time zone", "date"],
    }
}

/// Checks the three tables: present, primary key on exactly the contract's key column, replica
/// identity DEFAULT or FULL, every `NOT NULL` column of the DDL present, every DDL column present
/// of a compatible type. Extra columns are reported, not rejected.
pub fn check_tables(client: &mut Client) -> Result<Vec<TableCheck>, CdcError> {
    let mut out = Vec::new();
    for table in Table::ALL {
        let name = table.name();
        let ctx = format!("checking table {name}");
        let rel = client
            .query_opt(
                "SELECT c.relreplident::text FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&name],
            )
            .map_err(sql_err(ctx.clone()))?;
        let Some(rel) = rel else {
            return Err(CdcError::MissingTable { table: name.into() });
        };
        let replident: String = rel.get(0);
        let pk: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
                &[&name],
            )
            .map_err(sql_err(ctx.clone()))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let key = table.key_column();
        if pk.is_empty() {
            return Err(CdcError::NoPrimaryKey {
                table: name.into(),
                column: key.into(),
            });
        }
        if pk != [key] {
            return Err(CdcError::WrongPrimaryKey {
                table: name.into(),
                column: key.into(),
                found: pk.join(", "),
            });
        }
        if replident != "d" && replident != "f" {
            return Err(CdcError::Sql {
                context: ctx,
                message: format!(
                    "REPLICA IDENTITY must be DEFAULT or FULL (found {replident:?}): deletes must carry {key}"
                ),
            });
        }
        let cols: Vec<(String, String)> = client
            .query(
                "SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute \
                 WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                &[&name],
            )
            .map_err(sql_err(ctx))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (col, t, not_null) in table.columns() {
            match cols.iter().find(|(n, _)| n == col) {
                None if *not_null => {
                    return Err(CdcError::MissingColumn {
                        table: name.into(),
                        column: (*col).into(),
                    })
                }
                None => {}
                Some((_, found)) if !accepted(*t).contains(&found.as_str()) => {
                    return Err(CdcError::ColumnType {
                        table: name.into(),
                        column: (*col).into(),
                        found: found.clone(),
                        expected: accepted(*t).join(" or "),
                    })
                }
                Some(_) => {}
            }
        }
        let extra_columns = cols
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| !table.columns().iter().any(|(c, _, _)| c == n))
            .collect();
        out.push(TableCheck {
            table,
            extra_columns,
        });
    }
    Ok(out)
}

/// Slot and publication names are plain identifiers: `[a-z0-9_]{1,63}`.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), CdcError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CdcError::Sql {
            context: format!("{what} name {name:?}"),
            message: "use lower-case letters, digits and underscores (at most 63)".into(),
        })
    }
}

/// Creates the publication for the three tables, or adds the ones an existing one lacks.
pub(crate) fn ensure_publication(client: &mut Client, publication: &str) -> Result<(), CdcError> {
    check_name("publication", publication)?;
    let ctx = format!("publication {publication}");
    let exists = client
        .query_opt(
            "SELECT pubinsert AND pubupdate AND pubdelete FROM pg_publication WHERE pubname = $1",
            &[&publication],
        )
        .map_err(sql_err(ctx.clone()))?;
    let tables: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    match exists {
        None => {
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {publication} FOR TABLE {}",
                    tables.join(", ")
                ))
                .map_err(sql_err(ctx))?;
        }
        Some(row) => {
            let all_ops: bool = row.get(0);
            if !all_ops {
                return Err(CdcError::Sql {
                    context: ctx,
                    message: "the publication must publish insert, update and delete".into(),
                });
            }
            let have: Vec<String> = client
                .query(
                    "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1",
                    &[&publication],
                )
                .map_err(sql_err(ctx.clone()))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for t in tables {
                if !have.iter().any(|h| h == t) {
                    client
                        .batch_execute(&format!("ALTER PUBLICATION {publication} ADD TABLE {t}"))
                        .map_err(sql_err(ctx.clone()))?;
                }
            }
        }
    }
    Ok(())
}

/// A replication slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotInfo {
    pub database: String,
    pub plugin: String,
    /// `wal_status = 'lost'`: the slot was invalidated.
    pub lost: bool,
    pub active_pid: Option<i32>,
}

pub(crate) fn slot_info(client: &mut Client, slot: &str) -> Result<Option<SlotInfo>, CdcError> {
    let row = client
        .query_opt(
            "SELECT coalesce(database::text, ''), coalesce(plugin::text, ''), \
             coalesce(wal_status, ''), active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .map_err(sql_err(format!("reading slot {slot}")))?;
    Ok(row.map(|r| SlotInfo {
        database: r.get(0),
        plugin: r.get(1),
        lost: r.get::<_, String>(2) == "lost",
        active_pid: r.get(3),
    }))
}

pub(crate) fn current_database(client: &mut Client) -> Result<String, CdcError> {
    client
        .query_one("SELECT current_database()::text", &[])
        .map(|r| r.get(0))
        .map_err(sql_err("current_database()"))
}

/// Drops a slot (it must not be in use).
pub(crate) fn drop_slot(client: &mut Client, slot: &str) -> Result<(), CdcError> {
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .map(|_| ())
        .map_err(sql_err(format!("dropping slot {slot}")))
}
