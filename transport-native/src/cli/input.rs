//! Where `append` gets its blocks: files (one block each), stdin lines, or fixed-size chunks.

use std::io::{BufRead, Read};
use std::path::PathBuf;

/// A stream of blocks, read in batches bounded by count and bytes.
pub enum BlockSource<R: BufRead> {
    /// Each file is one block.
    Files(std::vec::IntoIter<PathBuf>),
    /// Each newline-terminated line (newline kept) is one block; a final unterminated line too.
    Lines(R),
    /// Fixed-size chunks; the last may be shorter.
    Chunks(R, usize),
}

/// Reading the input failed.
#[derive(Debug)]
pub struct InputError(pub String);

impl<R: BufRead> BlockSource<R> {
    /// The next batch: at most `max_blocks` blocks and (unless a single block is larger) at most
    /// `max_bytes` bytes. Empty when the input is exhausted.
    pub fn next_batch(
        &mut self,
        max_blocks: usize,
        max_bytes: usize,
    ) -> Result<Vec<Vec<u8>>, InputError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_blocks && (out.is_empty() || bytes < max_bytes) {
            let block = match self {
                BlockSource::Files(files) => match files.next() {
                    None => break,
                    Some(p) => std::fs::read(&p)
                        .map_err(|e| InputError(format!("cannot read {}: {e}", p.display())))?,
                },
                BlockSource::Lines(r) => {
                    let mut line = Vec::new();
                    let n = r
                        .read_until(b'\n', &mut line)
                        .map_err(|e| InputError(format!("cannot read stdin: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    line
                }
                BlockSource::Chunks(r, size) => {
                    let mut chunk = Vec::with_capacity(*size);
                    let n = r
                        .by_ref()
                        .take(*size as u64)
                        .read_to_end(&mut chunk)
                        .map_err(|e| InputError(format!("cannot read stdin: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    chunk
                }
            };
            bytes += block.len();
            out.push(block);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all<R: BufRead>(mut s: BlockSource<R>, n: usize, bytes: usize) -> Vec<Vec<Vec<u8>>> {
        let mut v = Vec::new();
        loop {
            let b = s.next_batch(n, bytes).unwrap();
            if b.is_empty() {
                return v;
            }
            v.push(b);
        }
    }

    #[test]
    fn lines_keep_newlines_and_the_unterminated_tail() {
        let got = all(BlockSource::Lines(&b"a\n\nbc\nd"[..]), 2, 1 << 20);
        assert_eq!(
            got,
            vec![
                vec![b"a\n".to_vec(), b"\n".to_vec()],
                vec![b"bc\n".to_vec(), b"d".to_vec()]
            ]
        );
        assert!(all(BlockSource::Lines(&b""[..]), 2, 10).is_empty());
    }

    #[test]
    fn chunks_are_fixed_size_with_a_short_tail() {
        let got = all(BlockSource::Chunks(&b"abcdefg"[..], 3), 10, 1 << 20);
        assert_eq!(
            got,
            vec![vec![b"abc".to_vec(), b"def".to_vec(), b"g".to_vec()]]
        );
    }

    #[test]
    fn byte_budget_splits_batches_but_never_empties_one() {
        let got = all(BlockSource::Chunks(&b"abcdefg"[..], 3), 10, 4);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
        let got = all(BlockSource::Chunks(&b"abcdefg"[..], 5), 10, 1);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1]);
    }
}
