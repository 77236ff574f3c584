//! Operators' passwords, kept only as argon2 hashes (PHC strings, the form the users
//! file holds and `tbot mock hash-password` prints).

use std::fmt;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// An argon2 password hash. Its text is not secret in the way a password is, but it is
/// still kept out of logs and `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn of(password: &str) -> PasswordHash {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 with its default parameters hashes any password");
        PasswordHash(hash.to_string())
    }

    /// Reads a hash from the users file; `what` names where it came from.
    pub fn parse(text: &str, what: &str) -> anyhow::Result<PasswordHash> {
        let parsed = argon2::PasswordHash::new(text.trim())
            .map_err(|err| anyhow::anyhow!("{what}: not an argon2 password hash ({err})"))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            anyhow::bail!(
                "{what}: the hash is {}, not argon2 (make one with `tbot mock hash-password`)",
                parsed.algorithm
            );
        }
        Ok(PasswordHash(text.trim().to_string()))
    }

    /// Whether `password` is the one this hash was made from.
    pub fn matches(&self, password: &str) -> bool {
        argon2::PasswordHash::new(&self.0).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }

    /// The PHC string, for the users file.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let hash = PasswordHash::of("correct horse");
        assert!(hash.as_str().starts_with("$argon2id$"), "{}", hash.as_str());
        assert!(hash.matches("correct horse"));
        assert!(!hash.matches("correct horse "));
        assert!(!hash.matches(""));
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(PasswordHash::of("pw"), PasswordHash::of("pw"));
    }

    #[test]
    fn a_hash_read_back_from_the_users_file_still_matches() {
        let hash = PasswordHash::of("plates");
        let read = PasswordHash::parse(hash.as_str(), "user ann").unwrap();
        assert!(read.matches("plates"));
    }

    #[test]
    fn what_is_not_an_argon2_hash_is_refused_with_where() {
        let err = PasswordHash::parse("plates", "user ann").unwrap_err();
        assert!(err.to_string().starts_with("user ann: "), "{err}");
        let err = PasswordHash::parse(
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$ZGlnZXN0ZGlnZXN0ZGlnZXN0",
            "user bob",
        )
        .unwrap_err();
        assert!(err.to_string().contains("not argon2"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_hash() {
        assert_eq!(format!("{:?}", PasswordHash::of("x")), "PasswordHash(***)");
    }
}
