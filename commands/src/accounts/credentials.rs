//! Password hashing with argon2id at OWASP's minimum parameters (m = 19 MiB, t = 2, p = 1).
//! Hashing is CPU-bound: the async [`hash`] / [`verify`] run it on the blocking pool, at
//! most one per core at a time, each in a reused 19 MiB memory area. Before, every hash
//! allocated its own area: glibc then raised its mmap threshold and kept the freed areas in
//! each thread's heap, and the server's peak RSS reached 194 MiB under the benchmark (44 MiB
//! with the areas returned). Now memory stays at cores × 19 MiB, and the rest of 32
//! concurrent log-ins wait their turn (the same total time) instead of 32 threads fighting
//! for 2 cores.
//! Hashes live only in the `accounts` table: never in events, never in logs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// Memory areas of the current parameters' size, kept for the next hash (at most one per
/// slot).
static AREAS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Runs argon2 over `password` and `salt` into `out`, in a reused memory area when the
/// parameters are the current ones (a hash made with other parameters gets its own area).
fn fill(argon: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> argon2::Result<()> {
    let blocks = argon.params().block_count();
    let pooled = blocks == hasher().params().block_count();
    let taken = pooled
        .then(|| AREAS.lock().unwrap_or_else(|e| e.into_inner()).pop())
        .flatten();
    let mut area = taken.unwrap_or_else(|| vec![Block::default(); blocks]);
    let done = argon.hash_password_into_with_memory(password, salt, out, &mut area);
    if pooled {
        let mut areas = AREAS.lock().unwrap_or_else(|e| e.into_inner());
        if areas.len() < slots() {
            areas.push(area);
        }
    }
    done
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_blocking(password: &str) -> Result<String, password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = hasher();
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let len = argon
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        Ok(fill(&argon, password.as_bytes(), salt_bytes, out)?)
    })?;
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    }
    .to_string())
}

/// Checks `password` against a parsed PHC hash, with its own algorithm, version and
/// parameters; the outputs are compared in constant time (`Output`'s `==`).
fn check(hash: &PasswordHash<'_>, password: &str) -> Result<(), password_hash::Error> {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(password_hash::Error::Password);
    };
    let algorithm = Algorithm::try_from(hash.algorithm)?;
    let version = match hash.version {
        Some(v) => Version::try_from(v)?,
        None => Version::default(),
    };
    let argon = Argon2::new(algorithm, version, Params::try_from(hash)?);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let computed = Output::init_with(expected.len(), |out| {
        Ok(fill(&argon, password.as_bytes(), salt_bytes, out)?)
    })?;
    if computed == *expected {
        Ok(())
    } else {
        Err(password_hash::Error::Password)
    }
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
    let ok = check(&parsed, password).is_ok();
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

/// How many password checks may run or wait at once, per core, by default: beyond that a
/// log-in is refused at once ([`Busy`]) instead of queueing without bound behind a flood of
/// guesses.
pub const CHECKS_WAITING_PER_CORE: usize = 8;

/// Too many password checks are running or waiting: the log-in is refused without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many log-ins are being checked right now")]
pub struct Busy;

/// The password checks of one service: at most `cap` running or waiting at once.
#[derive(Debug)]
pub struct CheckGate {
    checks: AtomicUsize,
    cap: usize,
}

impl CheckGate {
    pub fn new(cap: usize) -> Self {
        CheckGate {
            checks: AtomicUsize::new(0),
            cap: cap.max(1),
        }
    }

    /// [`CHECKS_WAITING_PER_CORE`] per core.
    pub fn per_core() -> Self {
        Self::new(slots() * CHECKS_WAITING_PER_CORE)
    }

    fn enter(&self) -> Result<CheckPlace<'_>, Busy> {
        if self.checks.fetch_add(1, Ordering::SeqCst) >= self.cap {
            self.checks.fetch_sub(1, Ordering::SeqCst);
            return Err(Busy);
        }
        Ok(CheckPlace(self))
    }
}

/// One password check counted from its start to its end (or its cancellation).
struct CheckPlace<'g>(&'g CheckGate);

impl Drop for CheckPlace<'_> {
    fn drop(&mut self) {
        self.0.checks.fetch_sub(1, Ordering::SeqCst);
    }
}

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

/// Whether `password` matches `hash` (see [`verify_blocking`]), checked on the blocking pool.
/// [`Busy`] when `gate` is full.
pub async fn verify(
    gate: &CheckGate,
    hash: Option<String>,
    password: String,
) -> Result<bool, Busy> {
    let _place = gate.enter()?;
    Ok(limited(move || verify_blocking(hash.as_deref(), &password))
        .await
        .unwrap_or(false))
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

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash_blocking("correct horse battery").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(hasher()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        assert!(hasher().verify_password(b"wrong", &parsed).is_err());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = hasher()
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking(Some(&theirs), "correct horse battery"));
        assert!(!verify_blocking(Some(&theirs), "correct horse batterz"));
        // A hash made with other parameters (or an older version) still verifies.
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x10,
            Params::new(64, 1, 1, Some(16)).unwrap(),
        )
        .hash_password(b"correct horse battery", &salt)
        .unwrap()
        .to_string();
        assert!(verify_blocking(Some(&small), "correct horse battery"));
        assert!(!verify_blocking(Some(&small), "correct horse"));
        // An argon2i hash verifies under its own algorithm, as with the crate's verifier; a
        // hash without its output never verifies.
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking(Some(&argon2i), "correct horse battery"));
        let truncated = &ours[..ours.rfind('$').unwrap()];
        assert!(!verify_blocking(Some(truncated), "correct horse battery"));
    }

    #[test]
    fn a_full_gate_refuses_a_check_and_a_finished_one_frees_its_place() {
        let gate = CheckGate::new(2);
        let first = gate.enter().unwrap();
        let _second = gate.enter().unwrap();
        assert_eq!(gate.enter().err(), Some(Busy));
        drop(first);
        assert!(gate.enter().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_there_are_cores() {
        let h = hash_blocking("correct horse battery").unwrap();
        let gate = std::sync::Arc::new(CheckGate::per_core());
        let mut runs = tokio::task::JoinSet::new();
        for i in 0..4 * slots() + 2 {
            let (h, gate) = (h.clone(), gate.clone());
            runs.spawn(async move {
                if i % 2 == 0 {
                    verify(&gate, Some(h), "correct horse battery".into()).await == Ok(true)
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
