//! Dialects: how an `Event` is written on the wire for each family of consumers.
//!
//! `native` is the project's own JSON; `routr`, `enswitch` and `portsip` reproduce the
//! wire formats that existing consumers of those systems already parse.

pub mod enswitch;
pub mod native;
pub mod portsip;
pub mod routr;

/// Largest encoded event, in bytes. Events are written into buffers of this size; an
/// event that does not fit is an `EncodeError::TooLarge` (it cannot happen with the
/// field bounds in `event`, and a test checks the largest possible event fits).
pub const MAX_ENCODED_LEN: usize = 16 * 1024;

/// A buffer holding one encoded event.
pub type Encoded = heapless::Vec<u8, MAX_ENCODED_LEN>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("encoded event larger than {MAX_ENCODED_LEN} bytes")]
    TooLarge,
}

/// Writes `value` as JSON into `out` (cleared first), with serde-json-core: no allocation.
pub fn write_json(value: &impl serde::Serialize, out: &mut Encoded) -> Result<(), EncodeError> {
    out.clear();
    // serde-json-core writes into a slice. A zeroed scratch array on the stack is one memset;
    // opening up `out` itself would initialise it element by element.
    let mut scratch = [0u8; MAX_ENCODED_LEN];
    let n = serde_json_core::to_slice(value, &mut scratch).map_err(|_| EncodeError::TooLarge)?;
    out.extend_from_slice(&scratch[..n])
        .map_err(|_| EncodeError::TooLarge)
}
