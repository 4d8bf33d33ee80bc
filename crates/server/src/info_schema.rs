//! `information_schema` as PostgreSQL names it, for the tools that read it (Power BI's navigator, Grafana's
//! column picker, SQLAlchemy, Metabase): PostgreSQL type names (`bigint`, `udt_name` `int8`), and the
//! constraint and character-set views they join, which DataFusion's own information schema lacks.
//!
//! The views are computed when a statement names them, from the tables registered in the session's
//! catalog at that moment (every schema but `pg_catalog` and `information_schema`). Lake tables have no
//! keys or constraints, so those views are empty with PostgreSQL's columns; `character_sets` is UTF8.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

/// The views provided.
const VIEWS: [&str; 9] = [
    "tables",
    "columns",
    "schemata",
    "views",
    "table_constraints",
    "key_column_usage",
    "referential_constraints",
    "constraint_column_usage",
    "character_sets",
];

/// PostgreSQL's `data_type` and `udt_name` for an Arrow type.
pub fn pg_type(t: &DataType) -> (&'static str, &'static str) {
    match t {
        DataType::Boolean => ("boolean", "bool"),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("smallint", "int2"),
        DataType::Int32 | DataType::UInt16 => ("integer", "int4"),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("bigint", "int8"),
        DataType::Float16 | DataType::Float32 => ("real", "float4"),
        DataType::Float64 => ("double precision", "float8"),
        DataType::Decimal128(..) | DataType::Decimal256(..) => ("numeric", "numeric"),
        DataType::Date32 | DataType::Date64 => ("date", "date"),
        DataType::Timestamp(_, None) => ("timestamp without time zone", "timestamp"),
        DataType::Timestamp(_, Some(_)) => ("timestamp with time zone", "timestamptz"),
        DataType::Time32(_) | DataType::Time64(_) => ("time without time zone", "time"),
        DataType::Interval(_) | DataType::Duration(_) => ("interval", "interval"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => ("bytea", "bytea"),
        DataType::List(_) | DataType::LargeList(_) => ("ARRAY", "_text"),
        _ => ("text", "text"),
    }
}

fn text(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn int(values: Vec<Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from(values))
}

/// A view's schema: text columns, except those named in `ints`.
fn schema(columns: &[&str], ints: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let t = if ints.contains(c) {
                    DataType::Int32
                } else {
                    DataType::Utf8
                };
                Field::new(*c, t, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// One table of the catalog: schema name, table name, Arrow schema.
type TableEntry = (String, String, SchemaRef);

/// `information_schema` over a catalog.
#[derive(Debug)]
pub struct PgInformationSchema {
    catalog_name: String,
    catalog: Weak<dyn CatalogProvider>,
}

impl PgInformationSchema {
    /// The schema for `catalog` (held weakly: the catalog holds this schema).
    pub fn new(catalog_name: &str, catalog: &Arc<dyn CatalogProvider>) -> PgInformationSchema {
        PgInformationSchema {
            catalog_name: catalog_name.to_string(),
            catalog: Arc::downgrade(catalog),
        }
    }

    async fn user_tables(&self) -> Result<Vec<TableEntry>> {
        let Some(catalog) = self.catalog.upgrade() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for s in schemas {
            if s == "pg_catalog" || s == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&s) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for t in names {
                if let Some(table) = schema.table(&t).await? {
                    out.push((s.clone(), t, table.schema()));
                }
            }
        }
        Ok(out)
    }

    async fn view(&self, name: &str) -> Result<Option<RecordBatch>> {
        let cat = Some(self.catalog_name.clone());
        let batch = match name {
            "tables" => {
                let t = self.user_tables().await?;
                let n = t.len();
                let cols = [
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "table_type",
                    "self_referencing_column_name",
                    "reference_generation",
                    "user_defined_type_catalog",
                    "user_defined_type_schema",
                    "user_defined_type_name",
                    "is_insertable_into",
                    "is_typed",
                    "commit_action",
                ];
                RecordBatch::try_new(
                    schema(&cols, &[]),
                    vec![
                        text(vec![cat.clone(); n]),
                        text(t.iter().map(|(s, _, _)| Some(s.clone())).collect()),
                        text(t.iter().map(|(_, n, _)| Some(n.clone())).collect()),
                        text(vec![Some("BASE TABLE".into()); n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                        text(vec![Some("NO".into()); n]),
                        text(vec![Some("NO".into()); n]),
                        text(vec![None; n]),
                    ],
                )?
            }
            "columns" => {
                let cols = [
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "column_name",
                    "ordinal_position",
                    "column_default",
                    "is_nullable",
                    "data_type",
                    "character_maximum_length",
                    "character_octet_length",
                    "numeric_precision",
                    "numeric_precision_radix",
                    "numeric_scale",
                    "datetime_precision",
                    "interval_type",
                    "character_set_catalog",
                    "character_set_schema",
                    "character_set_name",
                    "collation_catalog",
                    "collation_schema",
                    "collation_name",
                    "domain_name",
                    "udt_catalog",
                    "udt_schema",
                    "udt_name",
                    "dtd_identifier",
                    "is_identity",
                    "is_generated",
                    "is_updatable",
                ];
                let ints = [
                    "ordinal_position",
                    "character_maximum_length",
                    "character_octet_length",
                    "numeric_precision",
                    "numeric_precision_radix",
                    "numeric_scale",
                    "datetime_precision",
                ];
                let mut rows: Vec<[Option<String>; 29]> = Vec::new();
                let mut nums: Vec<[Option<i32>; 7]> = Vec::new();
                for (s, t, sch) in self.user_tables().await? {
                    for (i, f) in sch.fields().iter().enumerate() {
                        let (data_type, udt) = pg_type(f.data_type());
                        let (precision, radix, scale) = match f.data_type() {
                            DataType::Int16 | DataType::Int8 | DataType::UInt8 => {
                                (Some(16), Some(2), Some(0))
                            }
                            DataType::Int32 | DataType::UInt16 => (Some(32), Some(2), Some(0)),
                            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
                                (Some(64), Some(2), Some(0))
                            }
                            DataType::Float32 => (Some(24), Some(2), None),
                            DataType::Float64 => (Some(53), Some(2), None),
                            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
                                (Some(*p as i32), Some(10), Some(*s as i32))
                            }
                            _ => (None, None, None),
                        };
                        let datetime = match f.data_type() {
                            DataType::Timestamp(TimeUnit::Second, _) => Some(0),
                            DataType::Timestamp(TimeUnit::Millisecond, _) => Some(3),
                            DataType::Timestamp(..) => Some(6),
                            DataType::Date32 | DataType::Date64 => Some(0),
                            _ => None,
                        };
                        let octets = (udt == "text").then_some(1_073_741_824);
                        nums.push([
                            Some(i as i32 + 1),
                            None,
                            octets,
                            precision,
                            radix,
                            scale,
                            datetime,
                        ]);
                        rows.push([
                            cat.clone(),
                            Some(s.clone()),
                            Some(t.clone()),
                            Some(f.name().clone()),
                            None,
                            None,
                            Some(if f.is_nullable() { "YES" } else { "NO" }.into()),
                            Some(data_type.into()),
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            None,
                            cat.clone(),
                            Some("pg_catalog".into()),
                            Some(udt.into()),
                            Some((i + 1).to_string()),
                            Some("NO".into()),
                            Some("NEVER".into()),
                            Some("NO".into()),
                        ]);
                    }
                }
                let mut arrays = Vec::new();
                let mut num_col = 0;
                for (c, name) in cols.iter().enumerate() {
                    if ints.contains(name) {
                        arrays.push(int(nums.iter().map(|r| r[num_col]).collect()));
                        num_col += 1;
                    } else {
                        arrays.push(text(rows.iter().map(|r| r[c].clone()).collect()));
                    }
                }
                RecordBatch::try_new(schema(&cols, &ints), arrays)?
            }
            "schemata" => {
                let Some(catalog) = self.catalog.upgrade() else {
                    return Ok(None);
                };
                let mut names = catalog.schema_names();
                names.sort();
                let n = names.len();
                let cols = [
                    "catalog_name",
                    "schema_name",
                    "schema_owner",
                    "default_character_set_catalog",
                    "default_character_set_schema",
                    "default_character_set_name",
                    "sql_path",
                ];
                RecordBatch::try_new(
                    schema(&cols, &[]),
                    vec![
                        text(vec![cat.clone(); n]),
                        text(names.into_iter().map(Some).collect()),
                        text(vec![Some("shopstream".into()); n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                        text(vec![None; n]),
                    ],
                )?
            }
            "character_sets" => {
                let cols = [
                    "character_set_catalog",
                    "character_set_schema",
                    "character_set_name",
                    "character_repertoire",
                    "form_of_use",
                    "default_collate_catalog",
                    "default_collate_schema",
                    "default_collate_name",
                ];
                RecordBatch::try_new(
                    schema(&cols, &[]),
                    vec![
                        text(vec![None]),
                        text(vec![None]),
                        text(vec![Some("UTF8".into())]),
                        text(vec![Some("UCS".into())]),
                        text(vec![Some("UTF8".into())]),
                        text(vec![cat.clone()]),
                        text(vec![Some("pg_catalog".into())]),
                        text(vec![Some("C".into())]),
                    ],
                )?
            }
            // No views, keys or constraints in the lake: empty, with PostgreSQL's columns.
            "views" => RecordBatch::new_empty(schema(
                &[
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "view_definition",
                    "check_option",
                    "is_updatable",
                    "is_insertable_into",
                    "is_trigger_updatable",
                    "is_trigger_deletable",
                    "is_trigger_insertable_into",
                ],
                &[],
            )),
            "table_constraints" => RecordBatch::new_empty(schema(
                &[
                    "constraint_catalog",
                    "constraint_schema",
                    "constraint_name",
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "constraint_type",
                    "is_deferrable",
                    "initially_deferred",
                    "enforced",
                    "nulls_distinct",
                ],
                &[],
            )),
            "key_column_usage" => RecordBatch::new_empty(schema(
                &[
                    "constraint_catalog",
                    "constraint_schema",
                    "constraint_name",
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "column_name",
                    "ordinal_position",
                    "position_in_unique_constraint",
                ],
                &["ordinal_position", "position_in_unique_constraint"],
            )),
            "referential_constraints" => RecordBatch::new_empty(schema(
                &[
                    "constraint_catalog",
                    "constraint_schema",
                    "constraint_name",
                    "unique_constraint_catalog",
                    "unique_constraint_schema",
                    "unique_constraint_name",
                    "match_option",
                    "update_rule",
                    "delete_rule",
                ],
                &[],
            )),
            "constraint_column_usage" => RecordBatch::new_empty(schema(
                &[
                    "table_catalog",
                    "table_schema",
                    "table_name",
                    "column_name",
                    "constraint_catalog",
                    "constraint_schema",
                    "constraint_name",
                ],
                &[],
            )),
            _ => return Ok(None),
        };
        Ok(Some(batch))
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        VIEWS.iter().map(|v| v.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let name = name.to_ascii_lowercase();
        let Some(batch) = self.view(&name).await? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        VIEWS.contains(&name.to_ascii_lowercase().as_str())
    }
}
