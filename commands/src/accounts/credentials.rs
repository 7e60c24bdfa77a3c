//! Password hashing with argon2id at OWASP's minimum parameters (m = 19 MiB, t = 2, p = 1).
//! Hashing is CPU-bound: the async [`hash`] / [`verify`] run it on the blocking pool, at
//! most one per core at a time. Each hash takes 19 MiB: unbounded, 32 concurrent log-ins
//! took 600 MiB of memory and 32 blocking threads fighting for 2 cores; bounded, the rest
//! wait their turn (the same total time) and memory stays at cores × 19 MiB.
//! Hashes live only in the `accounts` table: never in events, never in logs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 256;

fn hasher() -> Argon2<'static> {
    // The parameters are constants within argon2's bounds.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password's length. The message names no password.
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(format!("must be at least {MIN_LENGTH} characters"));
    }
    if n > MAX_LENGTH {
        return Err(format!("must be at most {MAX_LENGTH} characters"));
    }
    Ok(())
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_blocking(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// A hash of nothing anyone knows, verified against when the account does not exist, so an
/// unknown e-mail costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_blocking("no account has this password; it only spends time").unwrap_or_default()
    })
}

/// True when `password` matches `hash`. With no hash, verifies against a dummy (same cost)
/// and answers false.
pub fn verify_blocking(hash: Option<&str>, password: &str) -> bool {
    let (phc, real) = match hash {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

/// How many hashes may run at once: one per core.
fn slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

static SLOTS: LazyLock<tokio::sync::Semaphore> =
    LazyLock::new(|| tokio::sync::Semaphore::new(slots()));
/// Hashes running now, and the most that ever ran at once.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` on the blocking pool once a slot is free.
async fn limited<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    // The semaphore is never closed.
    let _slot = SLOTS.acquire().await.ok();
    tokio::task::spawn_blocking(move || {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        let out = work();
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        out
    })
    .await
}

pub async fn hash(password: String) -> Result<String, crate::StoreError> {
    limited(move || hash_blocking(&password))
        .await
        .map_err(|e| crate::StoreError(Box::new(e)))?
        .map_err(|e| crate::StoreError(e.to_string().into()))
}

pub async fn verify(hash: Option<String>, password: String) -> bool {
    limited(move || verify_blocking(hash.as_deref(), &password))
        .await
        .unwrap_or(false)
}

/// Warms the dummy hash so the first unknown-e-mail login is not slower than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters() {
        let h = hash_blocking("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_blocking(Some(&h), "correct horse battery"));
        assert!(!verify_blocking(Some(&h), "wrong horse battery"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_blocking("correct horse battery").unwrap());
    }

    #[test]
    fn a_missing_hash_never_verifies() {
        assert!(!verify_blocking(
            None,
            "no account has this password; it only spends time"
        ));
        assert!(!verify_blocking(Some("not a phc string"), "x"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_cores() {
        let h = hash_blocking("correct horse battery").unwrap();
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..4 * slots() + 2 {
            let h = h.clone();
            runs.spawn(async move {
                if i % 2 == 0 {
                    verify(Some(h), "correct horse battery".into()).await
                } else {
                    hash("another long password".into()).await.is_ok()
                }
            });
        }
        while let Some(run) = runs.join_next().await {
            assert!(run.unwrap());
        }
        let peak = PEAK.load(Ordering::SeqCst);
        assert!(
            peak >= 1 && peak <= slots(),
            "{peak} at once, {} cores",
            slots()
        );
    }

    #[test]
    fn policy_bounds_length() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough pass").is_ok());
        assert!(check_policy(&"x".repeat(300)).is_err());
    }
}
