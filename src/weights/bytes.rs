//! Where a weights file's bytes are: in this memory (natively, and for a file
//! handed over as bytes), or in a buffer that pieces are copied from. In the
//! browser a download stays in a JS buffer outside the wasm memory and each
//! tensor is copied in as it is converted, so the file and the weights made
//! from it are never both in the wasm memory, which never shrinks.

use std::borrow::Cow;
use std::fmt::Debug;
use std::ops::Range;

use crate::error::Result;

/// The most bytes of a tensor copied in at once when the file is not in this memory.
pub const PIECE: usize = 1 << 20;

/// A file's bytes, read a range at a time.
pub trait FileBytes: Debug {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `range`, which lies within [`Self::len`]: borrowed when they are
    /// in this memory, copied otherwise, and then an error when the memory
    /// cannot hold them.
    fn read(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>>;
}

impl FileBytes for Vec<u8> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn read(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self[range]))
    }
}

/// `n` zeroed bytes to copy a piece of a file into, within the memory budget.
pub fn buffer(n: usize) -> Result<Vec<u8>> {
    crate::budget::vec_filled(|| "a piece of the weights file".to_string(), n, 0)
}

/// `range` cut into consecutive pieces of at most `most` bytes, each a
/// multiple of `unit` (the last excepted when `range` is not).
pub fn pieces(range: Range<usize>, unit: usize, most: usize) -> impl Iterator<Item = Range<usize>> {
    let step = (most / unit).max(1) * unit;
    range
        .clone()
        .step_by(step)
        .map(move |start| start..(start + step).min(range.end))
}

/// A file whose every read is a copy, as from a JS buffer, recording the
/// largest read: for the readers' tests.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Copied {
    pub bytes: Vec<u8>,
    pub largest: std::rc::Rc<std::cell::Cell<usize>>,
}

#[cfg(test)]
impl FileBytes for Copied {
    fn len(&self) -> usize {
        self.bytes.len()
    }

    fn read(&self, range: Range<usize>) -> Result<Cow<'_, [u8]>> {
        self.largest.set(self.largest.get().max(range.len()));
        Ok(Cow::Owned(self.bytes[range].to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_range_in_whole_units() {
        let got: Vec<_> = pieces(10..45, 6, 13).collect();
        assert_eq!(got, [10..22, 22..34, 34..45]);
        assert_eq!(pieces(0..5, 6, 13).collect::<Vec<_>>(), vec![0..5]);
        assert_eq!(pieces(3..3, 6, 13).count(), 0);
        // A unit larger than the most: one unit at a time.
        assert_eq!(
            pieces(0..20, 8, 4).collect::<Vec<_>>(),
            [0..8, 8..16, 16..20]
        );
    }
}
