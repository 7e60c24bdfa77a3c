//! The authenticated caller, as an extractor: `Authorization: Bearer <JWT>` is verified, then
//! the account is checked live (still active, clinic not suspended, current role), so a
//! deactivation, suspension or role change takes effect at once rather than when the access
//! token expires.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use commands::{Actor, ActorRole, CommandMeta};
use domain::ids::{ClinicId, StaffId};
use domain::values::Module;
use uuid::Uuid;

use crate::problem::ApiError;
use crate::state::{AppState, REQUEST_ID_HEADER};

#[derive(Clone, Debug)]
pub struct Principal {
    pub account_id: Uuid,
    /// `None` for the platform admin.
    pub clinic_id: Option<ClinicId>,
    pub role: ActorRole,
    /// The request's id (`x-request-id`), carried into event metadata.
    pub request_id: String,
    /// When the clinic's trial ends (`None` on a paid plan, and for the platform admin).
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The clinic's enabled modules (`None` for the platform admin, who has no clinic).
    pub modules: Option<Vec<Module>>,
}

/// The module a route belongs to, set on its router as a layer
/// (`.layer(Extension(RequiredModule(Module::Appointments)))`): the caller is refused with
/// 403 `module-disabled` when their clinic has not enabled it.
#[derive(Clone, Copy, Debug)]
pub struct RequiredModule(pub Module);

impl Principal {
    /// 403 unless the caller has one of `allowed`.
    pub fn require(&self, allowed: &[ActorRole]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }

    /// 402 once the caller's clinic's trial has ended: the clinic is read-only (log-ins and
    /// reads still work) until the platform puts it on a paid plan.
    pub fn ensure_may_write(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        match self.trial_ends_at {
            Some(ended_at) if ended_at <= now => Err(ApiError::TrialEnded { ended_at }),
            _ => Ok(()),
        }
    }

    /// 403 `module-disabled` unless the caller's clinic has enabled `module` (the platform
    /// admin has no clinic and no modules; the role checks answer for them).
    pub fn require_module(&self, module: Module) -> Result<(), ApiError> {
        match &self.modules {
            Some(enabled) if !enabled.contains(&module) => Err(ApiError::ModuleDisabled(module)),
            _ => Ok(()),
        }
    }

    /// The caller's clinic; 403 for the platform admin, who has none.
    pub fn clinic(&self) -> Result<ClinicId, ApiError> {
        self.clinic_id.ok_or_else(|| {
            ApiError::Forbidden(
                "this endpoint is for clinic staff; the platform admin has no clinic".into(),
            )
        })
    }

    pub fn actor(&self) -> Actor {
        Actor {
            id: self.account_id,
            role: self.role,
        }
    }

    /// Metadata for a command in the caller's own clinic.
    pub fn meta(&self) -> Result<CommandMeta, ApiError> {
        Ok(self.meta_for(self.clinic()?))
    }

    /// Metadata for a command in `clinic` (the platform admin acting on a clinic).
    pub fn meta_for(&self, clinic: ClinicId) -> CommandMeta {
        CommandMeta::new(clinic, self.actor(), self.request_id.clone())
    }

    /// The caller as a staff member (staff account ids are staff ids).
    pub fn staff_id(&self) -> Option<StaffId> {
        self.clinic_id.map(|_| StaffId::from_uuid(self.account_id))
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "expected `Authorization: Bearer <token>`".into(),
        ));
    }
    Ok(token.trim())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let claims = state.jwt.verify(token, state.clock.now()).map_err(|e| {
            tracing::info!(reason = %e, "access token refused");
            ApiError::Unauthorized("the access token is invalid or expired".into())
        })?;
        let account = state
            .accounts
            .find(claims.sub)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))?;
        if !account.active {
            return Err(ApiError::Unauthorized("the account is deactivated".into()));
        }
        // Logged out, deactivated or given a new password since this token was issued.
        if account
            .tokens_valid_after
            .is_some_and(|after| claims.iat < after.timestamp())
        {
            return Err(ApiError::Unauthorized(
                "the access token is invalid or expired".into(),
            ));
        }
        let clinic = account.clinic_id;
        if clinic != claims.clinic {
            return Err(ApiError::Unauthorized(
                "the access token is invalid or expired".into(),
            ));
        }
        if account.clinic_suspended {
            return Err(ApiError::ClinicSuspended);
        }
        let role = account.actor_role()?;
        let request_id = parts
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if let Some(clinic) = clinic {
            tracing::Span::current().record("clinic_id", tracing::field::display(clinic));
        }
        tracing::Span::current().record("actor_id", tracing::field::display(claims.sub));
        let principal = Principal {
            account_id: claims.sub,
            clinic_id: clinic.map(ClinicId::from_uuid),
            role,
            request_id,
            trial_ends_at: account.trial_ends_at,
            modules: account
                .clinic_modules
                .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect()),
        };
        if let Some(RequiredModule(module)) = parts.extensions.get::<RequiredModule>() {
            principal.require_module(*module)?;
        }
        Ok(principal)
    }
}
