use std::io::{Error as IoError, ErrorKind, Read, Result as IoResult};

/// llm-relay patch: the socket under a framed body (`Content-Length` or chunked). The body's
/// framing says where it ends, so the socket closing first is a cut body: an
/// `UnexpectedEof` error, not the `Ok(0)` that `EqualReader` and the chunked decoder would
/// pass on as the body's clean end (a proxy streaming the body on would then end it as
/// complete).
pub struct CutIsError<R> {
    inner: R,
}

impl<R: Read> CutIsError<R> {
    pub fn new(inner: R) -> Self {
        CutIsError { inner }
    }
}

impl<R: Read> Read for CutIsError<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self.inner.read(buf)? {
            0 if !buf.is_empty() => Err(IoError::new(
                ErrorKind::UnexpectedEof,
                "the client closed the connection before the end of the request body",
            )),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CutIsError;
    use crate::util::{EqualReader, FusedReader};
    use chunked_transfer::Decoder;
    use std::io::{Cursor, ErrorKind, Read};

    fn read_all(mut r: impl Read) -> Result<Vec<u8>, ErrorKind> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| e.kind())?;
        Ok(out)
    }

    #[test]
    fn a_whole_body_reads_to_its_end() {
        let chunked = Cursor::new(b"3\r\nabc\r\n0\r\n\r\nNEXT".to_vec());
        let body = FusedReader::new(Decoder::new(CutIsError::new(chunked)));
        assert_eq!(read_all(body), Ok(b"abc".to_vec()));
        let (body, _) = EqualReader::new(CutIsError::new(Cursor::new(b"abcNEXT".to_vec())), 3);
        assert_eq!(read_all(body), Ok(b"abc".to_vec()));
    }

    #[test]
    fn a_cut_body_is_an_error_not_an_end() {
        for cut in [&b"5\r\nab"[..], b"3\r\nabc\r\n", b"3\r\nabc\r\n0\r\n"] {
            let body = FusedReader::new(Decoder::new(CutIsError::new(Cursor::new(cut.to_vec()))));
            assert!(read_all(body).is_err(), "{:?}", String::from_utf8_lossy(cut));
        }
        let (body, _) = EqualReader::new(CutIsError::new(Cursor::new(b"ab".to_vec())), 3);
        assert_eq!(read_all(body), Err(ErrorKind::UnexpectedEof));
    }
}
