//! The OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export` on its
//! own listener (`otlp_grpc_listen`, off by default), served by tonic with
//! `opentelemetry-proto`'s generated service. The key is the `authorization` metadata
//! (`Bearer <key>`); a management key names the workspace in `x-tracecast-workspace-id`.
//! Everything after decoding is [`super::export::ingest`], as for OTLP/HTTP; errors are gRPC
//! statuses (the OTLP specification's OTLP/gRPC section: `INVALID_ARGUMENT`,
//! `UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE` retryable).

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;

use super::decode::MAX_DECODED_BYTES;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Metadata naming the workspace when the key is a management key.
pub const WORKSPACE_METADATA: &str = "x-tracecast-workspace-id";

struct Receiver {
    state: AppState,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (metadata, _, message) = request.into_parts();
        let headers = metadata.into_headers();
        let q = headers
            .get(WORKSPACE_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(|w| {
                format!(
                    "workspace_id={}",
                    url::form_urlencoded::byte_serialize(w.as_bytes()).collect::<String>()
                )
            });
        let (mut parts, ()) = axum::http::Request::new(()).into_parts();
        parts.headers = headers;
        let result = async {
            let caller = Caller::from_request_parts(&mut parts, &self.state).await?;
            super::export::ingest(&self.state, &caller, q, &message).await
        }
        .await;
        let status = match &result {
            Ok(_) => "200".to_string(),
            Err(e) => e.status.as_u16().to_string(),
        };
        metrics::counter!("tracecast_otlp_requests_total", "status" => status).increment(1);
        result.map(tonic::Response::new).map_err(grpc_status)
    }
}

fn grpc_status(e: ApiError) -> tonic::Status {
    let code = match e.status {
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    };
    tonic::Status::new(code, e.message)
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let service = TraceServiceServer::new(Receiver { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_DECODED_BYTES);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
