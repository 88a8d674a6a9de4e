//! The vault: credentials in memory, loaded from and saved to one
//! passphrase-encrypted age file.

use std::fmt;
use std::io::{self, Read, Write};
use std::iter;
use std::path::{Path, PathBuf};

use age::DecryptError;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::credential::{check_identifier, Credential, CredentialInfo};
use crate::file::{self, WriterLock};
use crate::{format, VaultError};

/// The largest scrypt work factor (log2 of N) written or read. At 22,
/// scrypt with age's parameters (r = 8) uses 4 GiB of memory.
pub const MAX_WORK_FACTOR: u8 = 22;

/// Credentials stored in a file encrypted with a passphrase in the age
/// format (an scrypt recipient), so that `age --decrypt` reads it with the
/// same passphrase.
///
/// Changes stay in memory until [`save`](Self::save). A save replaces the
/// file atomically, under an advisory lock, and fails with
/// [`VaultError::Conflict`] when another writer saved the file after this
/// vault read it. A read-modify-write that must not fail that way opens
/// the vault with [`open_locked`](Self::open_locked).
///
/// # Examples
///
/// ```no_run
/// use secrecy::SecretString;
/// use tokenfleet_vault::{Credential, Vault};
///
/// # fn main() -> Result<(), tokenfleet_vault::VaultError> {
/// let passphrase = SecretString::from(std::env::var("VAULT_PASSPHRASE").unwrap());
/// let mut vault = Vault::open_locked("vault.age", passphrase)?;
/// let secret = SecretString::from(std::env::var("NEW_TOKEN").unwrap());
/// vault.add(Credential::new("work-bot", "github", secret)?.with_account("ci")?)?;
/// vault.save()?;
/// for entry in vault.list() {
///     println!("{} {} {}", entry.name, entry.provider, entry.fingerprint);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Vault {
    path: PathBuf,
    passphrase: SecretString,
    credentials: Vec<Credential>,
    /// The scrypt work factor for the next save; `None` lets age calibrate
    /// one that takes about a second on this machine.
    work_factor: Option<u8>,
    /// The file's bytes as last read or written, to detect other writers.
    on_disk: Option<Vec<u8>>,
    lock: Option<WriterLock>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.credentials.iter().map(|c| c.name()).collect();
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("credentials", &names)
            .field("work_factor", &self.work_factor)
            .field("locked", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Creates an empty vault file at `path` with the default work factor.
    ///
    /// Missing parent directories are created with mode 0700.
    ///
    /// # Errors
    ///
    /// [`VaultError::AlreadyExists`] when a file is at `path`;
    /// [`VaultError::EmptyPassphrase`] for an empty passphrase;
    /// [`VaultError::Io`] when the file cannot be written.
    pub fn create(path: impl AsRef<Path>, passphrase: SecretString) -> Result<Self, VaultError> {
        Self::create_inner(path.as_ref(), passphrase, None)
    }

    /// Creates an empty vault file whose passphrase is stretched with
    /// scrypt work factor `log_n` (N = 2^log_n). Later saves keep the
    /// work factor of the file they replace.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), and [`VaultError::InvalidWorkFactor`]
    /// when `log_n` is 0 or above [`MAX_WORK_FACTOR`].
    pub fn create_with_work_factor(
        path: impl AsRef<Path>,
        passphrase: SecretString,
        log_n: u8,
    ) -> Result<Self, VaultError> {
        check_work_factor(log_n)?;
        Self::create_inner(path.as_ref(), passphrase, Some(log_n))
    }

    fn create_inner(
        path: &Path,
        passphrase: SecretString,
        work_factor: Option<u8>,
    ) -> Result<Self, VaultError> {
        check_passphrase(&passphrase)?;
        file::create_parent(path)?;
        let lock = WriterLock::acquire(path)?;
        if file::read_current(path)?.is_some() {
            return Err(VaultError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        let mut vault = Self {
            path: path.to_owned(),
            passphrase,
            credentials: Vec::new(),
            work_factor,
            on_disk: None,
            lock: Some(lock),
        };
        vault.write()?;
        vault.lock = None;
        Ok(vault)
    }

    /// Opens and decrypts the vault file at `path`.
    ///
    /// # Errors
    ///
    /// [`VaultError::NotFound`], [`VaultError::Permissions`] (the file is
    /// accessible by group or others), [`VaultError::WrongPassphrase`],
    /// [`VaultError::Truncated`], [`VaultError::Tampered`],
    /// [`VaultError::NotVault`], [`VaultError::ExcessiveWork`] or
    /// [`VaultError::InvalidPlaintext`]. None of them changes the file.
    pub fn open(path: impl AsRef<Path>, passphrase: SecretString) -> Result<Self, VaultError> {
        Self::open_inner(&file::follow_symlink(path.as_ref()), passphrase, None)
    }

    /// Opens the vault like [`open`](Self::open), after taking the
    /// writers' lock, and holds the lock until the vault is dropped. Other
    /// writers wait meanwhile, so a change made and saved through this
    /// vault cannot conflict with theirs.
    ///
    /// The lock is per open file, so a second `open_locked` or a `save` of
    /// another [`Vault`] of the same file in the same process waits until
    /// this vault is dropped, and forever in the same thread.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`VaultError::Io`] when the lock file
    /// cannot be opened.
    pub fn open_locked(
        path: impl AsRef<Path>,
        passphrase: SecretString,
    ) -> Result<Self, VaultError> {
        let path = &file::follow_symlink(path.as_ref());
        // Report a missing file before creating a lock file beside it.
        if !path.exists() {
            return Err(VaultError::NotFound {
                path: path.to_owned(),
            });
        }
        let lock = WriterLock::acquire(path)?;
        Self::open_inner(path, passphrase, Some(lock))
    }

    fn open_inner(
        path: &Path,
        passphrase: SecretString,
        lock: Option<WriterLock>,
    ) -> Result<Self, VaultError> {
        let bytes = file::read_private(path)?;
        let plaintext = decrypt(path, &bytes, &passphrase)?;
        let credentials = format::decode(path, &plaintext)?;
        tracing::debug!(file = %path.display(), entries = credentials.len(), "opened vault");
        Ok(Self {
            path: path.to_owned(),
            passphrase,
            credentials,
            work_factor: scrypt_work_factor(&bytes),
            on_disk: Some(bytes),
            lock,
        })
    }

    /// Adds a credential, in memory until [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// [`VaultError::DuplicateName`] when an entry has the same name.
    pub fn add(&mut self, credential: Credential) -> Result<(), VaultError> {
        if self.get(credential.name()).is_some() {
            return Err(VaultError::DuplicateName {
                name: credential.name,
            });
        }
        self.credentials.push(credential);
        Ok(())
    }

    /// Returns the credential with this name.
    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.credentials.iter().find(|c| c.name() == name)
    }

    /// Returns every credential, in the order they were added.
    pub fn credentials(&self) -> &[Credential] {
        &self.credentials
    }

    /// Returns the public summary of every credential: names, providers,
    /// fingerprints and notes, but no secret.
    pub fn list(&self) -> Vec<CredentialInfo> {
        self.credentials.iter().map(Credential::info).collect()
    }

    /// Removes a credential, in memory until [`save`](Self::save), and
    /// returns it.
    ///
    /// # Errors
    ///
    /// [`VaultError::EntryNotFound`] when no entry has this name.
    pub fn remove(&mut self, name: &str) -> Result<Credential, VaultError> {
        let index = self.index_of(name)?;
        Ok(self.credentials.remove(index))
    }

    /// Renames a credential, in memory until [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// [`VaultError::EntryNotFound`] when no entry is named `from`,
    /// [`VaultError::DuplicateName`] when one is already named `to`, and
    /// [`VaultError::InvalidField`] when `to` is not a valid name.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), VaultError> {
        let index = self.index_of(from)?;
        check_identifier("name", to)?;
        if from != to && self.get(to).is_some() {
            return Err(VaultError::DuplicateName {
                name: to.to_owned(),
            });
        }
        self.credentials[index].name = to.to_owned();
        Ok(())
    }

    /// Sets the scrypt work factor (N = 2^log_n) used from the next save on.
    ///
    /// # Errors
    ///
    /// [`VaultError::InvalidWorkFactor`] when `log_n` is 0 or above
    /// [`MAX_WORK_FACTOR`].
    pub fn set_work_factor(&mut self, log_n: u8) -> Result<(), VaultError> {
        check_work_factor(log_n)?;
        self.work_factor = Some(log_n);
        Ok(())
    }

    /// Encrypts the credentials and replaces the vault file atomically.
    ///
    /// # Errors
    ///
    /// [`VaultError::Conflict`] when the file changed since this vault read
    /// or wrote it (the file is left as the other writer saved it);
    /// [`VaultError::Io`] when it cannot be written, in which case the old
    /// file is unchanged.
    pub fn save(&mut self) -> Result<(), VaultError> {
        let temporary_lock = match self.lock {
            Some(_) => None,
            None => Some(WriterLock::acquire(&self.path)?),
        };
        if file::read_current(&self.path)? != self.on_disk {
            return Err(VaultError::Conflict {
                path: self.path.clone(),
            });
        }
        self.write()?;
        drop(temporary_lock);
        Ok(())
    }

    /// Returns the vault file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the number of credentials.
    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    /// Returns true when the vault contains no credential.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }

    fn index_of(&self, name: &str) -> Result<usize, VaultError> {
        self.credentials
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| VaultError::EntryNotFound {
                name: name.to_owned(),
            })
    }

    /// Writes the file; the caller holds the writers' lock.
    fn write(&mut self) -> Result<(), VaultError> {
        let plaintext = format::encode(&self.credentials);
        let bytes = encrypt(&plaintext, &self.passphrase, self.work_factor)
            .map_err(|error| VaultError::io("encrypting", &self.path, error))?;
        file::replace(&self.path, &bytes)?;
        tracing::debug!(file = %self.path.display(), entries = self.credentials.len(), "saved vault");
        self.on_disk = Some(bytes);
        Ok(())
    }
}

fn check_passphrase(passphrase: &SecretString) -> Result<(), VaultError> {
    use secrecy::ExposeSecret;

    if passphrase.expose_secret().is_empty() {
        return Err(VaultError::EmptyPassphrase {
            hint: "choose a passphrase of at least one character".to_owned(),
        });
    }
    Ok(())
}

fn check_work_factor(log_n: u8) -> Result<(), VaultError> {
    if log_n == 0 || log_n > MAX_WORK_FACTOR {
        return Err(VaultError::InvalidWorkFactor { value: log_n });
    }
    Ok(())
}

fn encrypt(
    plaintext: &str,
    passphrase: &SecretString,
    work_factor: Option<u8>,
) -> io::Result<Vec<u8>> {
    let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
    if let Some(log_n) = work_factor {
        recipient.set_work_factor(log_n);
    }
    let encryptor = age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
        .map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    let mut writer = encryptor.wrap_output(&mut bytes)?;
    writer.write_all(plaintext.as_bytes())?;
    writer.finish()?;
    Ok(bytes)
}

/// Decrypts a vault file, telling a wrong passphrase apart from a damaged
/// file.
///
/// A file cut short inside its last encrypted chunk fails the chunk's tag
/// check just as a modified byte does, so it is reported as
/// [`VaultError::Tampered`]; [`VaultError::Truncated`] covers a file cut
/// inside the header or before the final chunk.
fn decrypt(
    path: &Path,
    bytes: &[u8],
    passphrase: &SecretString,
) -> Result<Zeroizing<String>, VaultError> {
    let path_buf = || path.to_owned();
    let not_vault = |reason| VaultError::NotVault {
        path: path_buf(),
        reason,
    };

    let decryptor = match age::Decryptor::new_buffered(bytes) {
        Ok(decryptor) => decryptor,
        Err(DecryptError::Io(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(VaultError::Truncated { path: path_buf() })
        }
        Err(DecryptError::UnknownFormat) => {
            return Err(not_vault("it is not in the age v1 format"))
        }
        Err(_) if b"age-encryption.org/v1\n".starts_with(bytes) => {
            return Err(VaultError::Truncated { path: path_buf() })
        }
        Err(DecryptError::InvalidMac) => return Err(VaultError::Tampered { path: path_buf() }),
        Err(_) => return Err(not_vault("it does not start with a valid age header")),
    };
    if !decryptor.is_scrypt() {
        return Err(not_vault(
            "it is an age file encrypted to public keys, not to a passphrase",
        ));
    }

    // age's default cap is the work factor that takes about 16 s on this
    // machine, which a debug build or a busy machine puts below the 18
    // that the `age` tool (1.1) writes.
    let mut identity = age::scrypt::Identity::new(passphrase.clone());
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let mut reader = decryptor
        .decrypt(iter::once(&identity as &dyn age::Identity))
        .map_err(|error| match error {
            DecryptError::DecryptionFailed
            | DecryptError::KeyDecryptionFailed
            | DecryptError::NoMatchingKeys => VaultError::WrongPassphrase { path: path_buf() },
            DecryptError::InvalidMac => VaultError::Tampered { path: path_buf() },
            DecryptError::ExcessiveWork { required, .. } => VaultError::ExcessiveWork {
                path: path_buf(),
                required,
                maximum: MAX_WORK_FACTOR,
            },
            DecryptError::Io(error) => VaultError::io("decrypting", path, error),
            _ => not_vault("its header is not valid"),
        })?;

    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => VaultError::Truncated { path: path_buf() },
            io::ErrorKind::InvalidData => VaultError::Tampered { path: path_buf() },
            _ => VaultError::io("decrypting", path, error),
        })?;
    match std::str::from_utf8(&plaintext) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(error) => Err(VaultError::InvalidPlaintext {
            path: path_buf(),
            line: None,
            message: format!(
                "it is not UTF-8 text (invalid byte at offset {})",
                error.valid_up_to()
            ),
        }),
    }
}

/// Reads the scrypt work factor from the recipient line of an age header,
/// `-> scrypt SALT LOG_N`, so that a save keeps the file's work factor.
fn scrypt_work_factor(bytes: &[u8]) -> Option<u8> {
    for line in bytes.split(|&b| b == b'\n') {
        if line.starts_with(b"---") {
            break;
        }
        let Some(arguments) = line.strip_prefix(b"-> scrypt ") else {
            continue;
        };
        let text = std::str::from_utf8(arguments).ok()?;
        let log_n: u8 = text.split(' ').nth(1)?.parse().ok()?;
        return (1..=MAX_WORK_FACTOR).contains(&log_n).then_some(log_n);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_factor_read_from_header() {
        let passphrase = SecretString::from("correct horse".to_owned());
        let bytes = encrypt("version = 1\n", &passphrase, Some(11)).unwrap();
        assert_eq!(scrypt_work_factor(&bytes), Some(11));
        assert_eq!(scrypt_work_factor(b"not age"), None);
    }
}
