//! The PostgreSQL wire endpoint: psql, Power BI, Metabase, Grafana, DBeaver and every Postgres driver read
//! the lake's tables over the same live catalog as the HTTP API.
//!
//! Built on datafusion-postgres (pgwire and its pg_catalog), with what shopstream adds around it:
//! - **Read-only.** Only queries, `EXPLAIN`, `SHOW`, `SET`, transactions and cursors pass; anything else
//!   is refused with SQLSTATE 25006 before it is planned (delta-rs' tables would otherwise accept `INSERT`).
//! - **Live.** Before each statement the catalog looks for new Delta commits ([`LiveCatalog::refresh`]).
//! - **Reads as PostgreSQL 16.** `server_version` 16.6, `version()`, `current_setting(…)` and `SHOW` of the
//!   settings drivers ask for (`server_version_num`, `TimeZone`, `standard_conforming_strings`, …), so
//!   clients that gate features on the server version connect.
//! - **Auth.** With a password configured (or else the HTTP token), logins need it over SCRAM-SHA-256;
//!   without either, the endpoint is open, as it listens on loopback by default. TLS is used when a
//!   certificate and key are configured (clients may then ask for `sslmode=require`).

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::Sink;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, ServerParameterProvider,
    StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::Format;
use pgwire::api::results::Response;
use pgwire::api::{
    ClientInfo, ConnectionManager, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use serde::Deserialize;
use shopstream_engine::LiveCatalog;

use crate::pg_compat::CompatService;

/// The PostgreSQL version the endpoint reports (drivers gate features on it).
pub const PG_VERSION: &str = "16.6";
/// The same as a number, as in `server_version_num`.
pub const PG_VERSION_NUM: &str = "160006";
/// The database name clients see (the catalog's).
pub const DATABASE: &str = "shopstream";

/// The `[postgres]` section of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Serve the endpoint with `serve` and `demo`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address to listen on (port 0 picks one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The user name logins must use when a password applies.
    #[serde(default = "default_user")]
    pub user: String,
    /// Password for SCRAM-SHA-256 logins; empty: the `[server] token` if set, else no password.
    #[serde(default)]
    pub password: String,
    /// PEM certificate chain for TLS (with `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8) for TLS.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Most concurrent connections; more are refused.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn yes() -> bool {
    true
}
fn default_listen() -> String {
    "127.0.0.1:5433".into()
}
fn default_user() -> String {
    "shopstream".into()
}
fn default_max_connections() -> usize {
    64
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            enabled: true,
            listen: default_listen(),
            user: default_user(),
            password: String::new(),
            tls_cert: None,
            tls_key: None,
            max_connections: default_max_connections(),
        }
    }
}

/// Errors setting up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// The catalog could not be prepared for Postgres clients.
    #[error("preparing the Postgres catalog: {0}")]
    Catalog(String),
    /// TLS files could not be used.
    #[error("TLS with {path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Listening failed.
    #[error("listening on {listen}: {source}")]
    Listen {
        /// The address.
        listen: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Settings the endpoint reports, by lower-case name (for `SHOW`, `current_setting` and the startup).
fn settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("server_version", PG_VERSION),
        ("server_version_num", PG_VERSION_NUM),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("timezone", "UTC"),
        ("datestyle", "ISO, MDY"),
        ("intervalstyle", "postgres"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("search_path", "public"),
        ("max_identifier_length", "63"),
        ("default_transaction_read_only", "on"),
        ("transaction_read_only", "on"),
        ("transaction_isolation", "read committed"),
        ("default_transaction_isolation", "read committed"),
        ("is_superuser", "off"),
        ("lc_collate", "C"),
        ("lc_ctype", "C"),
        ("bytea_output", "hex"),
        ("extra_float_digits", "1"),
        ("max_index_keys", "32"),
        ("block_size", "8192"),
    ]
}

fn setting(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase();
    settings()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The `version()` text: PostgreSQL's shape, so clients that parse it find a version.
pub fn version_text() -> String {
    format!(
        "PostgreSQL {PG_VERSION} (shopstream {}, Apache DataFusion {}) on {}-linux, 64-bit",
        env!("CARGO_PKG_VERSION"),
        datafusion::DATAFUSION_VERSION,
        std::env::consts::ARCH
    )
}

/// The functions drivers call that DataFusion lacks: `version()`, `current_setting(…)`, `to_regtype(…)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextFn {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for TextFn {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(if self.name == "to_regtype" {
            DataType::Int32
        } else {
            DataType::Utf8
        })
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        use datafusion::common::ScalarValue;
        if self.name == "version" {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version_text(),
            ))));
        }
        if self.name == "to_regtype" {
            // The OID of a type the lake's columns use, NULL for any other (e.g. hstore): drivers probe
            // for extension types this way and carry on without them.
            let oid = |name: Option<&str>| -> Option<i32> {
                Some(match name?.trim().to_ascii_lowercase().as_str() {
                    "bool" | "boolean" => 16,
                    "int8" | "bigint" => 20,
                    "int4" | "integer" | "int" => 23,
                    "text" => 25,
                    "float8" | "double precision" => 701,
                    "varchar" | "character varying" => 1043,
                    "date" => 1082,
                    "timestamp" | "timestamp without time zone" => 1114,
                    "timestamptz" | "timestamp with time zone" => 1184,
                    "numeric" => 1700,
                    _ => return None,
                })
            };
            return Ok(match &args.args[0] {
                ColumnarValue::Scalar(s) => {
                    let name = s.to_string();
                    ColumnarValue::Scalar(ScalarValue::Int32(if s.is_null() {
                        None
                    } else {
                        oid(Some(&name))
                    }))
                }
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                    let a = a
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("cast to Utf8");
                    ColumnarValue::Array(Arc::new(
                        a.iter()
                            .map(oid)
                            .collect::<datafusion::arrow::array::Int32Array>(),
                    ))
                }
            });
        }
        // current_setting(name [, missing_ok])
        let missing_ok = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(b))) => b.unwrap_or(false),
            _ => false,
        };
        let lookup = |name: Option<&str>| -> datafusion::error::Result<Option<String>> {
            match name {
                None => Ok(None),
                Some(n) => match setting(n) {
                    Some(v) => Ok(Some(v.to_string())),
                    None if missing_ok => Ok(None),
                    None => Err(datafusion::error::DataFusionError::Execution(format!(
                        "unrecognized configuration parameter \"{n}\""
                    ))),
                },
            }
        };
        match &args.args[0] {
            ColumnarValue::Scalar(s) => {
                let name = match s {
                    ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                        v.clone()
                    }
                    other => Some(other.to_string()),
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(lookup(
                    name.as_deref(),
                )?)))
            }
            ColumnarValue::Array(a) => {
                let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                let a = a
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8");
                let out = a
                    .iter()
                    .map(lookup)
                    .collect::<datafusion::error::Result<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(out)))
            }
        }
    }
}

/// `json_build_object(key, value, …)`: a JSON object as text (SQLAlchemy's column reflection asks for it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        use datafusion::common::ScalarValue;
        if !args.args.len().is_multiple_of(2) {
            return Err(datafusion::error::DataFusionError::Execution(
                "json_build_object: argument list must have even number of elements".into(),
            ));
        }
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.clone().into_array(n))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let mut obj = serde_json::Map::new();
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                let value = ScalarValue::try_from_array(&pair[1], row)?;
                let json = if value.is_null() {
                    serde_json::Value::Null
                } else {
                    match value {
                        ScalarValue::Boolean(Some(b)) => serde_json::Value::Bool(b),
                        v if v.data_type().is_numeric() => {
                            serde_json::from_str(&v.to_string()).unwrap_or(serde_json::Value::Null)
                        }
                        v => serde_json::Value::String(v.to_string()),
                    }
                };
                obj.insert(key.to_string(), json);
            }
            out.push(serde_json::Value::Object(obj).to_string());
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}

fn register_functions(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(TextFn {
        name: "version",
        signature: Signature::nullary(Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(TextFn {
        name: "to_regtype",
        signature: Signature::string(1, Volatility::Stable),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(TextFn {
        name: "current_setting",
        signature: Signature::one_of(
            vec![
                datafusion::logical_expr::TypeSignature::String(1),
                datafusion::logical_expr::TypeSignature::Exact(vec![
                    DataType::Utf8,
                    DataType::Boolean,
                ]),
            ],
            Volatility::Stable,
        ),
    }));
}

/// Answers a statement with one text column and one row.
async fn one_value(ctx: &SessionContext, column: &str, value: &str) -> PgWireResult<Response> {
    let df = ctx
        .read_batch(
            datafusion::arrow::record_batch::RecordBatch::try_new(
                Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                    datafusion::arrow::datatypes::Field::new(column, DataType::Utf8, false),
                ])),
                vec![Arc::new(StringArray::from(vec![value]))],
            )
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?,
        )
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    Ok(Response::Query(
        encode_dataframe(df, &Format::UnifiedText, None).await?,
    ))
}

fn read_only_error(statement: &Statement) -> PgWireError {
    let text = statement.to_string();
    let head: String = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "25006".into(),
        format!("cannot execute {head} on shopstream: the Postgres endpoint is read-only"),
    )))
}

/// Whether any query in a statement writes: a data-modifying `WITH` or set operand
/// (`WITH x AS (INSERT …) SELECT …`), also inside `EXPLAIN` or `DECLARE`.
fn writes(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{SetExpr, Visit, Visitor};
    fn body_writes(body: &SetExpr) -> bool {
        match body {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                true
            }
            SetExpr::SetOperation { left, right, .. } => body_writes(left) || body_writes(right),
            SetExpr::Query(q) => body_writes(&q.body),
            _ => false,
        }
    }
    struct Writes;
    impl Visitor for Writes {
        type Break = ();
        fn pre_visit_query(
            &mut self,
            query: &datafusion::sql::sqlparser::ast::Query,
        ) -> std::ops::ControlFlow<()> {
            if body_writes(&query.body) {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        }
    }
    statement.visit(&mut Writes).is_break()
}

/// Whether a statement may run on the read-only endpoint. `EXPLAIN` only of a query: `EXPLAIN ANALYZE`
/// runs what it explains.
fn allowed(statement: &Statement) -> bool {
    if writes(statement) {
        return false;
    }
    if let Statement::Explain { statement, .. } = statement {
        return matches!(**statement, Statement::Query(_));
    }
    matches!(
        statement,
        Statement::Query(_)
            | Statement::ExplainTable { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowTables { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowSchemas { .. }
            | Statement::Set(_)
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Discard { .. }
            | Statement::Deallocate { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

/// Savepoints and `DISCARD` are no-ops on a read-only endpoint (psycopg issues savepoints around
/// statements; Npgsql discards a pooled connection's state).
fn savepoint(statement: &Statement) -> Option<Response> {
    use pgwire::api::results::Tag;
    match statement {
        Statement::Savepoint { .. } => Some(Response::Execution(Tag::new("SAVEPOINT"))),
        Statement::ReleaseSavepoint { .. } => Some(Response::Execution(Tag::new("RELEASE"))),
        // Npgsql resets pooled connections with DISCARD ALL: there is no session state to drop.
        Statement::Discard { .. } => Some(Response::Execution(Tag::new("DISCARD ALL"))),
        Statement::Rollback {
            savepoint: Some(_), ..
        } => Some(Response::Execution(Tag::new("ROLLBACK"))),
        _ => None,
    }
}

/// First of the hooks: refuses writes, refreshes the catalog, and answers `SHOW` of the settings above.
struct ShopstreamHook {
    catalog: Arc<LiveCatalog>,
}

impl ShopstreamHook {
    async fn refresh(&self) -> Option<PgWireResult<LogicalPlan>> {
        match self.catalog.refresh().await {
            Ok(_) => None,
            Err(e) => Some(Err(PgWireError::ApiError(Box::new(e)))),
        }
    }

    /// Refuses writes; answers savepoints, `DISCARD` and `SHOW` of our settings; `None` for the rest.
    async fn answer(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !allowed(statement) {
            return Some(Err(read_only_error(statement)));
        }
        if let Some(r) = savepoint(statement) {
            return Some(Ok(r));
        }
        self.show(statement, ctx, client).await
    }

    async fn show(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let Statement::ShowVariable { variable } = statement else {
            return None;
        };
        let name = variable
            .iter()
            .map(|v| v.value.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("_");
        let name = if name == "time_zone" {
            "timezone".into()
        } else {
            name
        };
        // The statement timeout follows `SET` in the session: datafusion-postgres keeps it.
        if name == "statement_timeout" {
            return None;
        }
        if name == "timezone" {
            // As set in this session (`SET TIME ZONE`, or the startup packet), else the server's.
            let tz = client
                .metadata()
                .get("timezone")
                .filter(|t| !t.is_empty())
                .cloned()
                .unwrap_or_else(|| "UTC".into());
            return Some(one_value(ctx, "TimeZone", &tz).await);
        }
        let value = setting(&name)?;
        Some(one_value(ctx, &name, value).await)
    }
}

#[async_trait]
impl QueryHook for ShopstreamHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(Err(e)) = self.refresh().await {
            return Some(Err(e));
        }
        self.answer(statement, ctx, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if !allowed(statement) {
            return Some(Err(read_only_error(statement)));
        }
        if savepoint(statement).is_some() {
            return Some(Ok(LogicalPlan::EmptyRelation(
                datafusion::logical_expr::EmptyRelation {
                    produce_one_row: false,
                    schema: Arc::new(datafusion::common::DFSchema::empty()),
                },
            )));
        }
        self.refresh().await
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The catalog was refreshed when the statement was parsed.
        self.answer(statement, ctx, client).await
    }
}

/// Startup parameters: PostgreSQL 16, read-only, UTC.
struct Parameters(DefaultServerParameterProvider);

impl Parameters {
    fn new() -> Parameters {
        let mut p = DefaultServerParameterProvider::default();
        p.server_version = PG_VERSION.into();
        p.is_superuser = false;
        p.default_transaction_read_only = true;
        Parameters(p)
    }
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        self.0.server_parameters(client)
    }
}

/// The password logins must give (SCRAM stores only the salted hash; we salt per login).
#[derive(Debug)]
struct Credentials {
    user: String,
    password: String,
}

#[async_trait]
impl AuthSource for Credentials {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        if user != self.user {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28P01".into(),
                format!("password authentication failed for user \"{user}\""),
            ))));
        }
        let salt: [u8; 16] = rand_salt();
        let hashed = gen_salted_password(&self.password, &salt, SCRAM_ITERATIONS);
        Ok(Password::new(Some(salt.to_vec()), hashed))
    }
}

const SCRAM_ITERATIONS: usize = 4096;

fn rand_salt() -> [u8; 16] {
    let u = uuid::Uuid::new_v4();
    *u.as_bytes()
}

/// A connection's startup: SCRAM when a password applies, otherwise none.
enum Startup {
    Open(Arc<Parameters>),
    Scram(Box<SASLAuthStartupHandler<Parameters>>),
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Scram(h) => h.on_startup(client, message).await,
            Startup::Open(params) => {
                if let PgWireFrontendMessage::Startup(ref startup) = message {
                    protocol_negotiation(client, startup).await?;
                    save_startup_parameters_to_metadata(client, startup);
                    let (pid, key) = RandomPidSecretKeyGenerator::default().generate(client);
                    client.set_pid_and_secret_key(pid, key);
                    finish_authentication(client, params.as_ref()).await?;
                }
                Ok(())
            }
        }
    }
}

struct Handlers {
    service: Arc<CompatService>,
    credentials: Option<Arc<Credentials>>,
    connections: Arc<ConnectionManager>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.service.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.service.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(match &self.credentials {
            None => Startup::Open(Arc::new(Parameters::new())),
            Some(credentials) => {
                let mut scram = ScramAuth::new(credentials.clone());
                scram.set_iterations(SCRAM_ITERATIONS);
                Startup::Scram(Box::new(
                    SASLAuthStartupHandler::new(Arc::new(Parameters::new()))
                        .with_scram(scram)
                        .with_connection_manager(self.connections.clone()),
                ))
            }
        })
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::new(DefaultCancelHandler::new(self.connections.clone()))
    }
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, PostgresError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = |path: &PathBuf, reason: String| PostgresError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(cert, e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(key, e.to_string()))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls(cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A bound endpoint, ready to [`run`](PostgresEndpoint::run).
pub struct PostgresEndpoint {
    listener: tokio::net::TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    /// The address actually bound.
    pub addr: std::net::SocketAddr,
}

/// Opens the lake's live catalog in a session that reads as PostgreSQL: the `pg_catalog` schema, a
/// PostgreSQL-shaped `information_schema` ([`crate::info_schema`]) and the functions drivers call. The HTTP
/// API and the Postgres endpoint share it.
pub async fn open_catalog(
    lake: shopstream_engine::Lake,
    user: &str,
) -> Result<Arc<LiveCatalog>, PostgresError> {
    let err = |e: &dyn std::fmt::Display| PostgresError::Catalog(e.to_string());
    let config = LiveCatalog::session_config()
        .map_err(|e| err(&e))?
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config(config);
    let catalog_provider = ctx
        .catalog(DATABASE)
        .ok_or_else(|| PostgresError::Catalog(format!("no catalog {DATABASE}")))?;
    catalog_provider
        .register_schema(
            "information_schema",
            Arc::new(crate::info_schema::PgInformationSchema::new(
                DATABASE,
                &catalog_provider,
            )),
        )
        .map_err(|e| err(&e))?;
    setup_pg_catalog(&ctx, DATABASE, EmptyContextProvider).map_err(|e| err(&e))?;
    crate::pg_compat::extend_pg_catalog(&ctx, DATABASE, user, &settings())
        .await
        .map_err(|e| err(&e))?;
    register_functions(&ctx);
    LiveCatalog::open_with(lake, ctx).await.map_err(|e| err(&e))
}

/// Binds the Postgres endpoint over `catalog` (from [`open_catalog`]). `token` is the HTTP token, the
/// password when `config.password` is empty.
pub async fn bind(
    config: &PostgresConfig,
    token: &str,
    catalog: Arc<LiveCatalog>,
) -> Result<PostgresEndpoint, PostgresError> {
    let ctx = catalog.context();
    let mut hooks: Vec<Arc<dyn QueryHook>> = vec![Arc::new(ShopstreamHook {
        catalog: catalog.clone(),
    })];
    hooks.extend(default_hooks());
    let service = Arc::new(CompatService::new(Arc::new(
        DfSessionService::new_with_hooks(Arc::new(ctx.clone()), hooks),
    )));
    let password = if config.password.is_empty() {
        token
    } else {
        &config.password
    };
    let credentials = (!password.is_empty()).then(|| {
        Arc::new(Credentials {
            user: config.user.clone(),
            password: password.to_string(),
        })
    });
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        (None, None) => None,
        (Some(c), None) | (None, Some(c)) => {
            return Err(PostgresError::Tls {
                path: c.display().to_string(),
                reason: "set both tls_cert and tls_key".into(),
            });
        }
    };
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| PostgresError::Listen {
            listen: config.listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| PostgresError::Listen {
            listen: config.listen.clone(),
            source,
        })?;
    Ok(PostgresEndpoint {
        listener,
        handlers: Arc::new(Handlers {
            service,
            credentials,
            connections: Arc::new(ConnectionManager::new()),
        }),
        tls,
        max_connections: config.max_connections,
        addr,
    })
}

/// datafusion-postgres' own hooks (cursors, `SET`/`SHOW`, transactions), after ours.
fn default_hooks() -> Vec<Arc<dyn QueryHook>> {
    use datafusion_postgres::hooks::{
        cursor::CursorStatementHook, set_show::SetShowHook, transactions::TransactionStatementHook,
    };
    vec![
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ]
}

impl PostgresEndpoint {
    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        let limiter = Arc::new(tokio::sync::Semaphore::new(self.max_connections.max(1)));
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("postgres accept: {e}");
                    continue;
                }
            };
            let Ok(permit) = limiter.clone().try_acquire_owned() else {
                tracing::warn!(
                    "postgres: refusing {peer}, {} connections open",
                    self.max_connections
                );
                drop(socket);
                continue;
            };
            let handlers = self.handlers.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
                    tracing::debug!("postgres connection from {peer}: {e}");
                }
                drop(permit);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(sql: &str) -> Statement {
        use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_reads_are_allowed() {
        for sql in [
            "SELECT 1",
            "EXPLAIN SELECT * FROM orders",
            "EXPLAIN ANALYZE SELECT * FROM orders",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SHOW search_path",
            "SET TIME ZONE 'UTC'",
        ] {
            assert!(allowed(&statement(sql)), "{sql}");
        }
        for sql in [
            "INSERT INTO orders (invoice_no) VALUES ('X')",
            "EXPLAIN ANALYZE INSERT INTO orders (invoice_no) VALUES ('X')",
            "EXPLAIN DELETE FROM orders",
            "WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x",
            "DROP TABLE orders",
            "CREATE TABLE t (a INT)",
        ] {
            assert!(!allowed(&statement(sql)), "{sql}");
        }
    }
}
