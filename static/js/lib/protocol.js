// Mirror of visassist/signalling/protocol.py: names only; the server validates everything.
// tests/test_protocol.py fails when the two drift apart.

export const PROTOCOL_VERSION = 1;

export const ClientMessage = Object.freeze({
  HELLO: "hello",
  OFFER: "offer",
  ICE: "ice",
  PING: "ping",
  SNAPSHOT: "snapshot",
  ANNOTATE: "annotate",
  END: "end",
  WATCH: "watch",
  CHAT: "chat",
  ANNOTATIONS: "annotations",
  POINTER: "pointer",
  FREEZE: "freeze",
  PHOTO_REQUEST: "photo.request",
  CAMERA: "camera",
  CAMERA_STATE: "camera.state",
  CAMERA_FAILED: "camera.failed",
  CAMERA_ALLOWED: "camera.allowed",
  QUALITY: "quality",
  QUALITY_REQUEST: "quality.request",
  MUTE: "mute",
  INVITE: "invite",
  HANDOVER: "handover",
  READ: "read",
  FIELD_CONFIRM: "field.confirm",
  FIELD_REJECT: "field.reject",
});

export const ServerMessage = Object.freeze({
  WELCOME: "welcome",
  ANSWER: "answer",
  PONG: "pong",
  PRESENCE: "presence",
  MEDIA: "media",
  SNAPSHOT_STORED: "snapshot.stored",
  CHAT: "chat",
  ANNOTATIONS: "annotations",
  POINTER: "pointer",
  FROZEN: "frozen",
  PHOTO_REQUESTED: "photo.requested",
  CAMERA: "camera",
  CAMERA_STATE: "camera.state",
  QUALITY: "quality",
  QUALITY_REQUEST: "quality.request",
  INVITED: "invited",
  ENDED: "ended",
  RESTARTING: "restarting",
  MOVED: "moved",
  ERROR: "error",
  READ_RESULT: "read.result",
  SNAPSHOT_READ: "snapshot.read",
  FIELD: "field",
});

export const ErrorCode = Object.freeze({
  INVALID_MESSAGE: "invalid_message",
  UNSUPPORTED_PROTOCOL: "unsupported_protocol",
  NOT_AUTHENTICATED: "not_authenticated",
  SIGN_IN_REQUIRED: "sign_in_required",
  INVALID_TOKEN: "invalid_token",
  SESSION_EXPIRED: "session_expired",
  SESSION_ENDED: "session_ended",
  SESSION_REVOKED: "session_revoked",
  FORBIDDEN: "forbidden",
  NO_VIDEO: "no_video",
  SNAPSHOT_LIMIT: "snapshot_limit",
  MEDIA_FAILED: "media_failed",
  REPLACED: "replaced",
  SESSION_FULL: "session_full",
  NOT_FOUND: "not_found",
  SERVER_BUSY: "server_busy",
  READER_BUSY: "reader_busy",
  INTERNAL_ERROR: "internal_error",
});

// After these the link will not work again on this page: stop reconnecting.
export const FATAL_ERRORS = new Set([
  ErrorCode.UNSUPPORTED_PROTOCOL,
  ErrorCode.INVALID_TOKEN,
  ErrorCode.SIGN_IN_REQUIRED,
  ErrorCode.SESSION_EXPIRED,
  ErrorCode.SESSION_ENDED,
  ErrorCode.SESSION_REVOKED,
  ErrorCode.REPLACED,
]);

// Video sources a session carries, and the quality profiles an agent can ask for.
export const Source = Object.freeze({ CAMERA: "camera", SCREEN: "screen", STAFF_SCREEN: "staff_screen" });
export const PROFILES = Object.freeze(["high", "medium", "low", "audio_only"]);

export const OUTCOMES = Object.freeze([
  "resolved",
  "escalated",
  "follow_up",
  "no_show",
  "abandoned",
  "technical_failure",
]);
