//! Multimodal content is replaced by small placeholders before a generation is stored, for every
//! destination: traces carry the text of a conversation, not its images, audio or files.
//!
//! A replaced content part becomes `{"type": "text", "text": "[image omitted]"}` (or `[audio
//! omitted]`, `[file omitted]`), so every platform still shows where the media was.

use serde_json::{Map, Value, json};

fn placeholder(kind: &str) -> Value {
    json!({"type": "text", "text": format!("[{kind} omitted]")})
}

/// The kind of media a content part carries, if it is one.
fn media_kind(part: &Map<String, Value>) -> Option<&'static str> {
    match part.get("type").and_then(Value::as_str)? {
        "image_url" | "image" | "input_image" | "output_image" => Some("image"),
        "input_audio" | "audio" | "output_audio" => Some("audio"),
        "file" | "input_file" | "document" => Some("file"),
        "video_url" | "video" | "input_video" => Some("video"),
        _ => None,
    }
}

fn strip_parts(content: &mut Value) {
    if let Value::Array(parts) = content {
        for part in parts.iter_mut() {
            if let Some(kind) = part.as_object().and_then(media_kind) {
                *part = placeholder(kind);
            }
        }
    }
}

fn strip_messages(messages: &mut Value) {
    if let Value::Array(msgs) = messages {
        for m in msgs.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(c) = m.get_mut("content") {
                strip_parts(c);
            }
            strip_message_media(m);
        }
    }
}

/// Generated media on an assistant message (`images`, `audio`).
fn strip_message_media(m: &mut Map<String, Value>) {
    if let Some(Value::Array(images)) = m.get_mut("images") {
        for img in images.iter_mut() {
            *img = placeholder("image");
        }
    }
    if m.get("audio").is_some_and(|a| !a.is_null()) {
        m.insert("audio".into(), Value::String("[audio omitted]".into()));
    }
}

/// Chat `messages`, and Responses-API `input` items with content parts.
pub fn strip_request(req: &mut Map<String, Value>) {
    if let Some(m) = req.get_mut("messages") {
        strip_messages(m);
    }
    if let Some(input @ Value::Array(_)) = req.get_mut("input") {
        strip_messages(input);
    }
}

/// Chat `choices[].message`, and Responses-API `output` items.
pub fn strip_response(resp: &mut Map<String, Value>) {
    if let Some(Value::Array(choices)) = resp.get_mut("choices") {
        for c in choices.iter_mut().filter_map(Value::as_object_mut) {
            for key in ["message", "delta"] {
                if let Some(m) = c.get_mut(key).and_then(Value::as_object_mut) {
                    if let Some(content) = m.get_mut("content") {
                        strip_parts(content);
                    }
                    strip_message_media(m);
                }
            }
        }
    }
    if let Some(out) = resp.get_mut("output") {
        strip_messages(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_audio_and_files_become_placeholders() {
        let mut req = json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_audio", "input_audio": {"data": "BBBB", "format": "wav"}},
                {"type": "file", "file": {"file_data": "CCCC"}}
            ]}
        ]});
        strip_request(req.as_object_mut().unwrap());
        let parts = &req["messages"][0]["content"];
        assert_eq!(parts[0]["text"], "what is this?");
        assert_eq!(parts[1], json!({"type": "text", "text": "[image omitted]"}));
        assert_eq!(parts[2]["text"], "[audio omitted]");
        assert_eq!(parts[3]["text"], "[file omitted]");
        assert!(!req.to_string().contains("AAAA"));

        let mut resp = json!({"choices": [{"message": {"role": "assistant", "content": "here", "images": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,DDDD"}}]}}]});
        strip_response(resp.as_object_mut().unwrap());
        assert!(!resp.to_string().contains("DDDD"));
        assert_eq!(resp["choices"][0]["message"]["content"], "here");
    }
}
