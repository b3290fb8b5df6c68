//! Capacity ranges → the size of a volume's file.
//!
//! Sizes are whole 4 KiB blocks (the largest logical block size a node may format with), so a
//! request is rounded up to the next multiple of 4 KiB and must still fit under its limit. A
//! request without a size gets [`DEFAULT_SIZE`].

use tonic::Status;

use crate::csi::v1::CapacityRange;
use crate::rds::value::ByteSize;

pub const DEFAULT_SIZE: u64 = 1 << 30;
pub const BLOCK: u64 = 4096;

/// A range with both ends known: `limit` is `None` when unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub required: u64,
    pub limit: Option<u64>,
}

impl Range {
    /// INVALID_ARGUMENT for negative bounds or a limit below the required size.
    pub fn of(range: Option<&CapacityRange>) -> Result<Range, Status> {
        let Some(range) = range else {
            return Ok(Range {
                required: 0,
                limit: None,
            });
        };
        let bound = |name, value: i64| {
            u64::try_from(value).map_err(|_| {
                Status::invalid_argument(format!("capacity_range.{name} is negative ({value})"))
            })
        };
        let required = bound("required_bytes", range.required_bytes)?;
        let limit = Some(bound("limit_bytes", range.limit_bytes)?).filter(|&l| l > 0);
        if let Some(limit) = limit.filter(|&l| l < required) {
            return Err(Status::invalid_argument(format!(
                "capacity_range.limit_bytes ({limit}) is below required_bytes ({required})"
            )));
        }
        Ok(Range { required, limit })
    }

    /// The range with `floor` as its least size, for a file system that cannot be made
    /// smaller: a required size below it is raised (CSI lets a volume be larger than required),
    /// OUT_OF_RANGE when the limit is below it. A range without a required size keeps its
    /// default, which is at least `floor` whenever the limit is.
    pub fn at_least(self, floor: u64, why: &str) -> Result<Range, Status> {
        if let Some(limit) = self.limit.filter(|&limit| limit < floor) {
            return Err(Status::out_of_range(format!(
                "capacity_range.limit_bytes ({limit}) is below {floor} bytes, the least {why}; \
                 allow at least {floor} bytes"
            )));
        }
        Ok(match self.required {
            0 => self,
            required => Range {
                required: required.max(floor),
                ..self
            },
        })
    }

    pub fn is_empty(&self) -> bool {
        self.required == 0 && self.limit.is_none()
    }

    /// Whether an existing volume of `size` bytes satisfies the range.
    pub fn admits(&self, size: u64) -> bool {
        size >= self.required && self.limit.is_none_or(|limit| size <= limit)
    }

    /// The size to create: the required size rounded up to whole blocks, or without one the
    /// default, or the most whole blocks under the limit when that is less. OUT_OF_RANGE when no
    /// block multiple fits.
    pub fn size(&self) -> Result<ByteSize, Status> {
        let wanted = match (self.required, self.limit) {
            (0, Some(limit)) => DEFAULT_SIZE.min(limit - limit % BLOCK),
            (0, None) => DEFAULT_SIZE,
            (required, _) => required,
        };
        let size = wanted
            .checked_next_multiple_of(BLOCK)
            .filter(|&size| self.limit.is_none_or(|limit| size <= limit))
            .and_then(|size| ByteSize::new(size).ok())
            .ok_or_else(|| {
                Status::out_of_range(format!(
                    "no size in {self} is a whole number of 4 KiB blocks that the RDS can hold; \
                     volume sizes are multiples of 4096 bytes up to {}",
                    ByteSize::MAX - ByteSize::MAX % BLOCK
                ))
            })?;
        Ok(size)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.limit {
            Some(limit) => write!(f, "[{}, {limit}] bytes", self.required),
            None => write!(f, "[{}, ∞) bytes", self.required),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn range(required: i64, limit: i64) -> Result<Range, Status> {
        Range::of(Some(&CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }))
    }

    fn size(required: i64, limit: i64) -> Result<u64, Code> {
        range(required, limit)
            .and_then(|r| r.size())
            .map(ByteSize::get)
            .map_err(|s| s.code())
    }

    #[test]
    fn a_floor_raises_the_required_size_and_refuses_a_limit_below_it() {
        let floor = |required, limit| {
            range(required, limit)
                .unwrap()
                .at_least(1000, "of a test")
                .map(|r| (r.required, r.limit))
                .map_err(|s| s.code())
        };
        assert_eq!(floor(10, 0), Ok((1000, None)));
        assert_eq!(floor(10, 2000), Ok((1000, Some(2000))));
        assert_eq!(floor(5000, 0), Ok((5000, None)));
        assert_eq!(floor(0, 0), Ok((0, None)));
        assert_eq!(floor(0, 999), Err(Code::OutOfRange));
        assert_eq!(floor(10, 999), Err(Code::OutOfRange));
    }

    #[test]
    fn sizes_round_up_to_blocks_within_the_limit() {
        assert_eq!(Range::of(None).unwrap().size().unwrap().get(), DEFAULT_SIZE);
        assert_eq!(size(0, 0), Ok(DEFAULT_SIZE));
        assert_eq!(size(1, 0), Ok(4096));
        assert_eq!(size(4096, 4096), Ok(4096));
        assert_eq!(size(4097, 0), Ok(8192));
        assert_eq!(size(0, 8192), Ok(8192));
        assert_eq!(size(0, 10_000), Ok(8192));
        assert_eq!(size(1 << 30, 1 << 30), Ok(1 << 30));
    }

    #[test]
    fn impossible_ranges_are_out_of_range() {
        assert_eq!(size(1000, 2000), Err(Code::OutOfRange));
        assert_eq!(size(0, 4095), Err(Code::OutOfRange));
        assert_eq!(size(i64::MAX, 0), Err(Code::OutOfRange));
        assert_eq!(size(i64::MAX - 4095, 0), Ok(i64::MAX as u64 - 4095));
    }

    #[test]
    fn malformed_ranges_are_invalid() {
        assert_eq!(size(-1, 0), Err(Code::InvalidArgument));
        assert_eq!(size(0, -1), Err(Code::InvalidArgument));
        assert_eq!(size(8192, 4096), Err(Code::InvalidArgument));
    }

    #[test]
    fn existing_sizes_are_admitted_within_the_range() {
        let r = range(4096, 8192).unwrap();
        assert!(r.admits(4096) && r.admits(8192));
        assert!(!r.admits(4095) && !r.admits(8193));
        assert!(Range::of(None).unwrap().admits(1));
        assert!(Range::of(None).unwrap().is_empty());
        assert!(!r.is_empty());
    }
}
