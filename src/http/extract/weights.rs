//! A weights file (safetensors) read from a request body as it arrives, judged by its first
//! bytes rather than once it is all in.
//!
//! - The first 8 bytes, the header length, are judged as soon as they arrive: beyond what a
//!   file for the model's spec can need (or beyond a `Content-Length`), the body is refused
//!   there, unread.
//! - The JSON header is judged as soon as it is in, on a blocking thread (a large model's may
//!   be megabytes): its tensors, their dtypes and shapes and mlp-lab's metadata against the
//!   spec, as [`crate::nn::header`] says. It also says the exact size of the whole file.
//! - From then on the body may be that size and no other: a file over the route's limit, or a
//!   `Content-Length` that differs, is refused before a byte of the data is read; a chunked
//!   body at the first byte past it, or when it ends short.
//!
//! So what a body can make the server hold is the file its header describes (at most the
//! route's limit), or, for a body that is refused, the header and one piece of hyper's read
//! buffer: never a body it was sent whole.

use axum::extract::Request;

use super::BodyPieces;
use crate::http::blocking::blocking;
use crate::http::error::ApiError;
use crate::http::middleware::body_limit::content_length;
use crate::nn::header::{
    check_body_length, header_cut_short, header_length, longer_than, no_prefix, read_header,
    whole_file, PREFIX_BYTES,
};
use crate::nn::ModelSpec;

/// The weights file in the body of `request`, for a model of `spec`, read no further than its
/// header allows. What it holds has been judged up to the tensors' values; `nn::import`
/// reads them.
///
/// # Errors
/// 422 [`ApiError::Validation`] when the file cannot be one for `spec` (naming the tensor, or
/// none for the file as a whole); 413 when the file its header describes, or the body, is over
/// the route's limit; 400 for a body that cannot be read.
pub async fn read_weights(request: Request, spec: ModelSpec) -> Result<Vec<u8>, ApiError> {
    // hyper reads no further than a `Content-Length`, and fails a body that ends before it.
    let declared = content_length(request.headers());
    let mut body = BodyPieces::new(request);
    let mut file = Vec::new();
    if !fill(&mut body, &mut file, PREFIX_BYTES).await? {
        return Err(no_prefix(file.len()).into());
    }
    let mut prefix = [0u8; PREFIX_BYTES];
    prefix.copy_from_slice(&file[..PREFIX_BYTES]);
    let n = header_length(&spec, prefix, declared)?;
    // Within the bound of `max_header_bytes`, so a `usize` on any target that runs us.
    let header_end = usize::try_from(n)
        .ok()
        .and_then(|n| n.checked_add(PREFIX_BYTES))
        .ok_or_else(|| whole_file("the header length does not fit this machine's memory"))?;
    if !fill(&mut body, &mut file, header_end).await? {
        return Err(header_cut_short(n, (file.len() - PREFIX_BYTES) as u64).into());
    }
    let (mut file, header) = blocking(move || {
        let header = read_header(&spec, &file[PREFIX_BYTES..header_end])?;
        Ok((file, header))
    })
    .await?;
    let size = header.file_bytes;
    if let Some(limit) = body.body_limit() {
        if size > limit.max.0 {
            return Err(limit.exceeded());
        }
    }
    if let Some(declared) = declared {
        check_body_length(size, declared)?;
    }
    let size = usize::try_from(size).map_err(|_| longer_than(size))?;
    if file.len() > size {
        return Err(longer_than(size as u64).into());
    }
    file.reserve_exact(size - file.len());
    while let Some(piece) = body.next().await? {
        if piece.len() > size - file.len() {
            return Err(longer_than(size as u64).into());
        }
        file.extend_from_slice(&piece);
    }
    check_body_length(size as u64, file.len() as u64)?;
    Ok(file)
}

/// Reads pieces into `file` until it holds `len` bytes (perhaps more: the rest of the last
/// piece); false when the body ends first.
async fn fill(body: &mut BodyPieces, file: &mut Vec<u8>, len: usize) -> Result<bool, ApiError> {
    while file.len() < len {
        match body.next().await? {
            Some(piece) => file.extend_from_slice(&piece),
            None => return Ok(false),
        }
    }
    Ok(true)
}
