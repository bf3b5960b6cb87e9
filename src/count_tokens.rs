//! `POST /v1/messages/count_tokens`: counted by the endpoint that serves the model when it
//! speaks Anthropic Messages (the body passed through as it came), estimated here when only
//! Chat Completions endpoints serve it, a 404 naming the model when none does.
//!
//! The estimate is `shape`'s (the one `context_trim` uses, high rather than low) over the chat
//! request the Messages request translates to: its messages plus its tools' JSON text. The
//! answer is Anthropic's shape, `{"input_tokens": N}`, with the header
//! `X-Relay-Token-Count: estimate`; a field that cannot be translated is a 400 naming it, as
//! for `/v1/messages`.

use serde_json::{json, Value};

use crate::api::Api;
use crate::body_cost::Reservation;
use crate::error::ApiError;
use crate::exchange::{json_content_type, Exchange};
use crate::intake;
use crate::passthrough;
use crate::pipeline::{self, Endpoint, Next, Work};
use crate::state::State;
use crate::translate::{self, Dialect};

/// The header that marks a count as the relay's estimate.
pub const ESTIMATE_HEADER: &str = "X-Relay-Token-Count";

/// Answers (an estimate), or hands the request on to an Anthropic endpoint.
pub fn handle(state: &State, ex: &mut Exchange) -> Result<Next, ApiError> {
    let Some(req) = ex.request_mut() else {
        return Ok(Next::Done);
    };
    intake::check_content_type(req)?;
    let config = &state.config;
    let mut reserved = Reservation::new(config.max_body_bytes_in_flight);
    let raw = intake::read_body(
        req,
        config.max_body_bytes,
        config.client_timeout,
        &mut reserved,
    )?;
    let body = intake::parse_body(&raw, &mut reserved)?;
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    state.gate.allow_model(ex.client(), asked)?;
    let model = pipeline::ruled_model(config, asked).to_string();
    ex.access.model = model.clone();
    if pipeline::translation(config, Endpoint::Messages, &body).is_none() {
        if !config.upstreams.speaks(&model, Api::Anthropic) {
            return Err(ApiError::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "no endpoint in `upstreams` serves the model \"{model}\", so its tokens \
                     cannot be counted"
                ),
            ));
        }
        let pass = passthrough::admit_read(state, ex, raw, reserved)?;
        return Ok(pass.map_or(Next::Done, |p| Next::Upstream(Work::Passthrough(p))));
    }
    let chat = translate::to_chat(Dialect::Anthropic, &body)
        .map_err(|e| ApiError::invalid("untranslatable_field", e.message(Dialect::Anthropic)))?;
    let tokens = crate::shape::request_tokens(&chat);
    let headers = [
        json_content_type(),
        (ESTIMATE_HEADER.to_string(), "estimate".to_string()),
    ];
    let answer = json!({"input_tokens": tokens}).to_string().into_bytes();
    ex.respond(200, &headers, answer);
    Ok(Next::Done)
}
