//! The opaque search cursor: the sort key of the last record of a page,
//! hex-encoded so it is URL-safe. The next page starts strictly after it, so
//! pages neither repeat nor skip records that existed when the first page
//! was read, whatever is inserted meanwhile.

use crate::store::{Result, StoreError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub scheduled_ms: i64,
    pub record_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", self.scheduled_ms, self.record_id))
    }

    pub fn decode(s: &str) -> Result<Cursor> {
        let bytes = hex::decode(s).map_err(|_| StoreError::BadCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
        let (ms, id) = text.split_once('|').ok_or(StoreError::BadCursor)?;
        Ok(Cursor {
            scheduled_ms: ms.parse().map_err(|_| StoreError::BadCursor)?,
            record_id: id.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let c = Cursor {
            scheduled_ms: 1_774_407_600_000,
            record_id: "j~20260325T030000.000Z#1".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).expect("decode"), c);
        for bad in ["zz", "", "31", &hex::encode("x|y")] {
            assert!(
                matches!(Cursor::decode(bad), Err(StoreError::BadCursor)),
                "{bad}"
            );
        }
    }
}
