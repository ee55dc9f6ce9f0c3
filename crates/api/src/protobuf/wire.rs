//! The protobuf wire format: a flat sequence of (field number, wire type, payload).
//!
//! Only reading is needed. Every read is bounds-checked and consumes at least one byte,
//! so hostile input ends in an error, never a panic or an endless loop.

use super::ProtobufError;

/// One field's payload, as the wire type frames it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Wire<'_> {
    /// The wire type's name, for error messages.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Wire::Varint(_) => "a varint",
            Wire::Fixed64(_) => "a 64-bit value",
            Wire::Bytes(_) => "a length-delimited value",
            Wire::Fixed32(_) => "a 32-bit value",
        }
    }
}

/// Reads the fields of one message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Whether every byte has been read.
    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next field, or `None` at the end of the message.
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err(ProtobufError(format!("invalid field number {number}")));
        }
        let number = number as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .map_err(|_| ProtobufError(format!("field {number}: length {len} is too large")))?;
                Wire::Bytes(self.take(len).map_err(|_| {
                    ProtobufError(format!("field {number}: length {len} runs past the end of the message"))
                })?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            3 | 4 => return Err(ProtobufError(format!("field {number}: protobuf groups are not supported"))),
            other => return Err(ProtobufError(format!("field {number}: invalid wire type {other}"))),
        };
        Ok(Some((number, wire)))
    }

    /// A base-128 varint of at most ten bytes.
    pub(super) fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(ProtobufError("truncated varint".into()));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(ProtobufError("varint overflows 64 bits".into()));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError("varint overflows 64 bits".into()))
    }

    /// A little-endian 64-bit value (`double`, `fixed64`).
    pub(super) fn fixed64(&mut self) -> Result<u64, ProtobufError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(len).filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(ProtobufError("message is truncated".into()));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

/// All fields of a message, for callers that want to look at each once.
pub(super) fn fields(buf: &[u8]) -> impl Iterator<Item = Result<(u32, Wire<'_>), ProtobufError>> {
    let mut reader = Reader::new(buf);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let next = reader.next_field().transpose();
        failed = matches!(next, Some(Err(_)));
        next
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_little_endian_groups_of_seven_bits() {
        assert_eq!(Reader::new(&[0x01]).varint(), Ok(1));
        assert_eq!(Reader::new(&[0xac, 0x02]).varint(), Ok(300));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&max).varint(), Ok(u64::MAX));
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        assert!(Reader::new(&[0x80, 0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint().is_err());
    }

    #[test]
    fn fields_carry_their_number_and_payload() {
        // 1: varint 150, 2: "hi", 3: fixed64 1, 4: fixed32 2
        let buf = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0];
        let got: Vec<_> = fields(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![(1, Wire::Varint(150)), (2, Wire::Bytes(b"hi")), (3, Wire::Fixed64(1)), (4, Wire::Fixed32(2))]
        );
    }

    #[test]
    fn lengths_past_the_end_and_groups_are_rejected() {
        assert!(fields(&[0x12, 0x05, b'a']).any(|f| f.is_err()));
        assert!(fields(&[0x0b]).any(|f| f.is_err()));
        assert!(fields(&[0x00, 0x01]).any(|f| f.is_err()), "field number 0 is invalid");
        assert!(fields(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f]).any(|f| f.is_err()));
    }
}
