// SPDX-License-Identifier: GPL-2.0

//! The ring records of one virtio buffer's mappings, held back until the
//! whole buffer is mapped (`map_page_batch`, then `map_flush`).
//!
//! The virtio core maps a buffer one scatterlist entry at a time. Each
//! mapping writes its table entries at once, but its ring record waits
//! here: a mapping that continues the pending run of frames (or overlaps
//! it) widens that run instead of costing a record of its own, and the
//! buffer's last run is published when the virtio core flushes the
//! buffer, before the device can see it. The host's view only ever lags
//! the table, never leads it: until the record is drained, the host does
//! not learn of an access the guest granted.

/// What is pending for one buffer, kept in the two words of
/// `struct virtio_map_batch` (zeroed by the virtio core before the
/// buffer's first mapping: an empty batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapBatch {
    /// First frame of the pending run.
    gfn: u64,
    /// Frames in the pending run; 0 when nothing is pending.
    nr: u64,
}

/// What [`MapBatch::add`] did with a mapping's record.
#[derive(Debug, PartialEq, Eq)]
pub enum Added {
    /// It joined the pending run: one record spared.
    Merged,
    /// It is the pending run now; the run it replaced, if any, must be
    /// published first.
    Replaced(Option<(u64, u32)>),
}

impl MapBatch {
    /// The batch kept in `words`.
    pub fn from_words(words: [u64; 2]) -> Self {
        MapBatch {
            gfn: words[0],
            nr: words[1],
        }
    }

    /// The words to keep the batch in.
    pub fn to_words(self) -> [u64; 2] {
        [self.gfn, self.nr]
    }

    /// Adds the record `(gfn, nr)` of one mapping (`nr > 0`).
    pub fn add(&mut self, gfn: u64, nr: u32) -> Added {
        let (start, end) = (gfn, gfn + u64::from(nr));
        if self.nr > 0 {
            let (run_start, run_end) = (self.gfn, self.gfn + self.nr);
            // Adjacent or overlapping: the union is one run of frames,
            // every one of which some mapping of the buffer changed.
            if start <= run_end && end >= run_start {
                let (s, e) = (run_start.min(start), run_end.max(end));
                if u32::try_from(e - s).is_ok() {
                    *self = MapBatch { gfn: s, nr: e - s };
                    return Added::Merged;
                }
            }
        }
        let before = self.take();
        *self = MapBatch {
            gfn,
            nr: u64::from(nr),
        };
        Added::Replaced(before)
    }

    /// Empties the batch; returns the record still to publish, if any.
    pub fn take(&mut self) -> Option<(u64, u32)> {
        let pending = core::mem::take(self);
        // A count beyond a record's cannot be built by `add`; treat a
        // corrupted batch as empty rather than publish a huge range.
        let nr = u32::try_from(pending.nr).ok()?;
        (nr > 0).then_some((pending.gfn, nr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_batch_has_nothing_to_publish() {
        let mut b = MapBatch::from_words([0, 0]);
        assert_eq!(b.take(), None);
    }

    #[test]
    fn adjacent_and_overlapping_mappings_make_one_record() {
        let mut b = MapBatch::default();
        assert_eq!(b.add(100, 2), Added::Replaced(None));
        assert_eq!(b.add(102, 3), Added::Merged);
        assert_eq!(b.add(98, 2), Added::Merged);
        assert_eq!(b.add(101, 1), Added::Merged);
        assert_eq!(b.take(), Some((98, 7)));
        assert_eq!(b.take(), None);
    }

    #[test]
    fn a_gap_publishes_the_run_before_it() {
        let mut b = MapBatch::default();
        b.add(10, 1);
        assert_eq!(b.add(12, 1), Added::Replaced(Some((10, 1))));
        assert_eq!(b.take(), Some((12, 1)));
    }

    #[test]
    fn a_run_never_outgrows_a_record() {
        let mut b = MapBatch::default();
        b.add(0, u32::MAX);
        assert_eq!(
            b.add(u64::from(u32::MAX), 1),
            Added::Replaced(Some((0, u32::MAX)))
        );
    }

    #[test]
    fn the_words_round_trip() {
        let mut b = MapBatch::default();
        b.add(7, 3);
        let words = b.to_words();
        assert_eq!(MapBatch::from_words(words), b);
        assert_eq!(MapBatch::from_words([5, u64::MAX]).take(), None);
    }
}
