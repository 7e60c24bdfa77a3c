//! The one path every command endpoint takes: authenticate, authorise by role, then parse the
//! body (so a caller without the role learns nothing about validation), run the command once
//! per `Idempotency-Key` with the `If-Match` version, and answer (201 + `Location` or 200, with
//! `ETag`).
//!
//! A handler names the roles, the body type and what to run:
//!
//! ```ignore
//! async fn deactivate(cmd: Command<IdPath>) -> Result<Response, ApiError> {
//!     cmd.run(roles::PATIENT_DESK, |req: DeactivatePatient, ctx| {
//!         ctx.update::<Patient>(PatientCommand::Deactivate { reason: req.reason })
//!     })
//!     .await
//! }
//! ```

use std::future::Future;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::Response;
use commands::{ActorRole, CommandMeta, Committed, EventStore, Expect};
use cqrs_es::Aggregate;
use domain::clock::Services;
use domain::error::DomainError;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::Principal;
use crate::http::{CommandRequest, CommandResponse, IdPath, JsonBody};
use crate::idempotency;
use crate::problem::ApiError;
use crate::state::AppState;

/// A command request: the caller, the path parameters `P` (`()` or [`IdPath`]), `If-Match`
/// and `Idempotency-Key`, and the body, read but not yet parsed. Extracted in that order, as
/// separate extractors would be.
pub struct Command<P = ()> {
    state: AppState,
    principal: Principal,
    path: P,
    request: CommandRequest,
    body: JsonBody,
    /// The endpoint refuses a request without `Idempotency-Key` (see
    /// [`Command::requiring_idempotency_key`]).
    key_required: bool,
}

impl<P> FromRequest<AppState> for Command<P>
where
    P: FromRequestParts<AppState> + Send,
    ApiError: From<P::Rejection>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let principal = Principal::from_request_parts(&mut parts, state).await?;
        let path = P::from_request_parts(&mut parts, state).await?;
        let request = CommandRequest::from_request_parts(&mut parts, state).await?;
        let body = JsonBody::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Command {
            state: state.clone(),
            principal,
            path,
            request,
            body,
            key_required: false,
        })
    }
}

impl<P> Command<P> {
    /// Makes `Idempotency-Key` required (a command that must never run twice by accident, as
    /// a payment): without one, a body that parses is refused with a 422 naming the header.
    /// The caller's role is checked first, and the body after it, as for every command.
    pub fn requiring_idempotency_key(mut self) -> Self {
        self.key_required = true;
        self
    }

    /// Runs `command` with the body parsed as `B`, if the caller has one of `roles`.
    pub async fn run<B, F, Fut>(self, roles: &[ActorRole], command: F) -> Result<Response, ApiError>
    where
        B: DeserializeOwned,
        F: FnOnce(B, Ctx<P>) -> Fut,
        Fut: Future<Output = Result<CommandResponse, ApiError>>,
    {
        let started = std::time::Instant::now();
        let name = crate::metrics::commands::command_name(
            &self.request.method,
            self.request.route.as_deref(),
        );
        let metrics = self.state.metrics.clone();
        let answer = self.authorise_and_run(roles, command).await;
        let status = match &answer {
            Ok(response) => response.status(),
            Err(err) => err.status(),
        };
        metrics.command(name, status, started.elapsed());
        answer
    }

    async fn authorise_and_run<B, F, Fut>(
        self,
        roles: &[ActorRole],
        command: F,
    ) -> Result<Response, ApiError>
    where
        B: DeserializeOwned,
        F: FnOnce(B, Ctx<P>) -> Fut,
        Fut: Future<Output = Result<CommandResponse, ApiError>>,
    {
        self.principal.require(roles)?;
        self.principal.ensure_may_write(self.state.clock.now())?;
        let Command {
            state,
            principal,
            path,
            request,
            body,
            key_required,
        } = self;
        if key_required && request.idempotency_key.is_none() {
            body.parse::<B>()?;
            return Err(ApiError::field(
                "Idempotency-Key",
                "this command requires an Idempotency-Key header (1 to 255 visible ASCII characters, \
                 one per payment: a retry with the same key gets the first answer)",
            ));
        }
        let pool = state.pool.clone();
        let claim = idempotency::Claimant {
            account_id: principal.account_id,
            request_id: principal.request_id.clone(),
            lease: state.idempotency_lease,
        };
        let ctx = Ctx {
            state,
            principal,
            path,
            expect: request.expect,
            idempotency_key: request.idempotency_key.clone(),
        };
        idempotency::run_once(&pool, &claim, &request, &body, async {
            command(body.parse()?, ctx).await
        })
        .await
    }
}

/// What a command gets once the caller is authorised and the body parsed.
pub struct Ctx<P> {
    pub state: AppState,
    pub principal: Principal,
    pub path: P,
    /// `If-Match`.
    pub expect: Expect,
    /// `Idempotency-Key`, if the request has one.
    pub idempotency_key: Option<String>,
}

impl<P> Ctx<P> {
    pub fn store(&self) -> &EventStore {
        &self.state.store
    }

    /// Metadata for a command in the caller's own clinic (403 for the platform admin).
    pub fn meta(&self) -> Result<CommandMeta, ApiError> {
        self.principal.meta()
    }

    /// Runs `command` on aggregate `id` of the caller's clinic.
    pub async fn execute<A>(&self, id: Uuid, command: A::Command) -> Result<Committed, ApiError>
    where
        A: Aggregate<Services = Services>,
        A::Error: DomainError + Send + Sync + 'static,
        A::Command: Send,
    {
        let meta = self.meta()?;
        Ok(self
            .store()
            .execute::<A>(&meta, id, command, self.expect)
            .await?)
    }
}

impl Ctx<IdPath> {
    /// The `{id}` of the path.
    pub fn id(&self) -> Uuid {
        self.path.0
    }

    /// Runs `command` on the aggregate the path names and answers 200.
    pub async fn update<A>(self, command: A::Command) -> Result<CommandResponse, ApiError>
    where
        A: Aggregate<Services = Services>,
        A::Error: DomainError + Send + Sync + 'static,
        A::Command: Send,
    {
        let committed = self.execute::<A>(self.id(), command).await?;
        Ok(CommandResponse::updated(self.id(), &committed))
    }
}
