//! The windows of a view: which window(s) an event belongs to. Times are microseconds of the shop-local
//! wall clock (as event times are stored); windows are aligned on it, as a shop reads its day.
//!
//! - Tumbling (`TUMBLE(src, t, size)`): `[n·size, (n+1)·size)`, one per event.
//! - Hopping (`HOP(src, t, slide, size)`): every `[n·slide, n·slide + size)` holding the event.
//! - Session (`SESSION(src, t, gap)`): per key, events less than `gap` apart share a window `[first, last +
//!   gap)`; an event starts as its own `[t, t + gap)` and [`super::state`] merges the windows it overlaps.
//! - None (`FROM src`): an updating aggregate, one row per key, kept until its time to live.

use arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;

use crate::error::{EngineError, Result};

/// A view's window; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// No window: an updating aggregate (or a filter and projection).
    None,
    /// Tumbling windows of `size` µs.
    Tumble { size: i64 },
    /// Windows of `size` µs starting every `slide` µs.
    Hop { slide: i64, size: i64 },
    /// Per-key sessions closed by a `gap` µs without events.
    Session { gap: i64 },
}

impl std::fmt::Display for WindowKind {
    /// As `view describe` shows it: `tumbling, 1 minute`, `hopping, 1 hour every 1 minute`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            WindowKind::None => write!(f, "none (an updating aggregate, or rows as they come)"),
            WindowKind::Tumble { size } => write!(f, "tumbling, {}", length(size)),
            WindowKind::Hop { slide, size } => {
                write!(f, "hopping, {} every {}", length(size), length(slide))
            }
            WindowKind::Session { gap } => write!(f, "session, gap {}", length(gap)),
        }
    }
}

/// A length of `micros` µs in the largest unit that divides it (`90 seconds`, `1 hour`).
fn length(micros: i64) -> String {
    let units = [
        (86_400_000_000, "day"),
        (3_600_000_000, "hour"),
        (60_000_000, "minute"),
        (1_000_000, "second"),
        (1_000, "millisecond"),
        (1, "microsecond"),
    ];
    let (size, unit) = units
        .into_iter()
        .find(|(size, _)| micros % size == 0)
        .unwrap_or((1, "microsecond"));
    let n = micros / size;
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl WindowKind {
    /// The window `function` (`TUMBLE`, `HOP`, `SESSION`) with its lengths in µs; `Err` says what is wrong.
    pub fn new(function: &str, lengths: &[i64]) -> std::result::Result<WindowKind, String> {
        if lengths.iter().any(|l| *l <= 0) {
            return Err(format!("{function}: window lengths must be positive"));
        }
        match (function, lengths) {
            ("TUMBLE", [size]) => Ok(WindowKind::Tumble { size: *size }),
            ("HOP", [slide, size]) if slide > size => {
                Err("HOP: the slide is longer than the window, so events would be skipped".into())
            }
            ("HOP", [slide, size]) => Ok(WindowKind::Hop {
                slide: *slide,
                size: *size,
            }),
            ("SESSION", [gap]) => Ok(WindowKind::Session { gap: *gap }),
            _ => Err(format!("{function}: wrong number of lengths")),
        }
    }

    /// How many windows an event belongs to (at most).
    pub fn windows_per_event(&self) -> usize {
        match *self {
            WindowKind::Hop { slide, size } => ((size + slide - 1) / slide).max(1) as usize,
            _ => 1,
        }
    }

    /// Pushes the windows `[start, end)` an event at `t` belongs to.
    pub fn assign(&self, t: i64, out: &mut Vec<(i64, i64)>) {
        match *self {
            WindowKind::None => out.push((0, 0)),
            WindowKind::Tumble { size } => {
                let start = t.div_euclid(size) * size;
                out.push((start, start + size));
            }
            WindowKind::Hop { slide, size } => {
                let mut start = t.div_euclid(slide) * slide;
                while start + size > t {
                    out.push((start, start + size));
                    start -= slide;
                }
            }
            WindowKind::Session { gap } => out.push((t, t + gap)),
        }
    }

    /// Whether windows are kept per key and merged (sessions).
    pub fn is_session(&self) -> bool {
        matches!(self, WindowKind::Session { .. })
    }
}

/// `batch` with each row repeated once per window it belongs to, and the columns `window_start` and
/// `window_end` added (`schema` is the result's). Rows without an event time are left out.
pub fn expand(
    window: WindowKind,
    batch: &RecordBatch,
    times: &TimestampMicrosecondArray,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let (mut rows, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let mut windows = Vec::new();
    for i in 0..batch.num_rows() {
        if times.is_null(i) {
            continue;
        }
        windows.clear();
        window.assign(times.value(i), &mut windows);
        for &(s, e) in &windows {
            rows.push(i as u32);
            starts.push(s);
            ends.push(e);
        }
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 2);
    let identity =
        rows.len() == batch.num_rows() && rows.iter().enumerate().all(|(j, &i)| i as usize == j);
    if identity {
        // One window per row and every row kept (tumbling and session windows): the columns as they are.
        columns.extend(batch.columns().iter().cloned());
    } else {
        let indices = UInt32Array::from(rows);
        for c in batch.columns() {
            columns.push(take(c.as_ref(), &indices, None)?);
        }
    }
    columns.push(std::sync::Arc::new(TimestampMicrosecondArray::from(starts)));
    columns.push(std::sync::Arc::new(TimestampMicrosecondArray::from(ends)));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| EngineError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::WindowKind;

    const MIN: i64 = 60_000_000;

    fn windows(w: WindowKind, t: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        w.assign(t, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn events_fall_in_the_windows_that_hold_them() {
        let tumble = WindowKind::Tumble { size: MIN };
        assert_eq!(windows(tumble, 90_000_000), vec![(MIN, 2 * MIN)]);
        assert_eq!(
            windows(tumble, MIN),
            vec![(MIN, 2 * MIN)],
            "the start belongs"
        );
        assert_eq!(windows(tumble, -1), vec![(-MIN, 0)], "before the epoch");
        let hop = WindowKind::Hop {
            slide: MIN,
            size: 3 * MIN,
        };
        assert_eq!(
            windows(hop, 4 * MIN + 5),
            vec![(2 * MIN, 5 * MIN), (3 * MIN, 6 * MIN), (4 * MIN, 7 * MIN)]
        );
        let session = WindowKind::Session { gap: 30 * MIN };
        assert_eq!(windows(session, 7), vec![(7, 7 + 30 * MIN)]);
        assert!(WindowKind::new("HOP", &[2 * MIN, MIN]).is_err());
        assert!(WindowKind::new("TUMBLE", &[0]).is_err());
    }

    #[test]
    fn windows_read_as_a_user_wrote_them() {
        let minute = 60_000_000;
        assert_eq!(
            WindowKind::Tumble { size: minute }.to_string(),
            "tumbling, 1 minute"
        );
        let hop = WindowKind::Hop {
            slide: minute,
            size: 60 * minute,
        };
        assert_eq!(hop.to_string(), "hopping, 1 hour every 1 minute");
        let session = WindowKind::Session { gap: 90_000_000 };
        assert_eq!(session.to_string(), "session, gap 90 seconds");
    }
}
