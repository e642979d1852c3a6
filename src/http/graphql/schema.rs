//! What every domain's resolvers share: the request limits, the runtime from the schema data, the
//! one mapping of errors to GraphQL errors, and the reading of a closed set's text as its enum.

use async_graphql::{Context, ErrorExtensions};

use crate::http::error::ApiError;
use crate::runtime::RuntimeHandle;

/// Deepest selection a request may make. Our own types nest at most three levels; the bound is
/// set by the introspection query GraphiQL sends (a dozen levels of `ofType`), with room to spare.
pub const MAX_DEPTH: usize = 20;

/// Most fields one request may select (each field counts 1, lists included), so a client cannot
/// make the server walk an arbitrarily large selection. GraphiQL's introspection stays well below.
pub const MAX_COMPLEXITY: usize = 1000;

/// The runtime from the schema data.
pub(crate) fn runtime<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a RuntimeHandle> {
    // `schema()` always puts the runtime in the schema data; this only fails for a schema built
    // some other way, and then an error is the honest answer.
    ctx.data::<RuntimeHandle>()
}

/// Turns an [`ApiError`] into a GraphQL error carrying the same `code` (and HTTP status and
/// details) as the REST answer would, under `extensions`.
pub(crate) fn gql_error(e: ApiError) -> async_graphql::Error {
    let details = async_graphql::Value::from_json(e.details.clone()).unwrap_or_default();
    let status = i32::from(e.status.as_u16());
    async_graphql::Error::new(e.message).extend_with(move |_, ext| {
        ext.set("code", e.code.clone());
        ext.set("status", status);
        ext.set("details", details.clone());
    })
}

/// Any error that converts to an [`ApiError`] (every domain's `DescribedError`, a
/// `DomainError`, a mailbox error) as a GraphQL error: the one mapping all domains use.
pub(crate) fn to_gql<E: Into<ApiError>>(e: E) -> async_graphql::Error {
    gql_error(e.into())
}

/// The answer of a field whose domain is not built yet: the REST 501 error (`not_implemented`,
/// `details.domain`), with the domain also directly under `extensions` for clients that look
/// there first.
pub(crate) fn not_built(domain: &'static str) -> async_graphql::Error {
    gql_error(ApiError::not_implemented(domain)).extend_with(move |_, ext| ext.set("domain", domain))
}
