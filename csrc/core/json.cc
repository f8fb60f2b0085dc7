// Strict JSON parser: see json.h.
#include "core/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace unet_rt::json {

const Value* Value::find(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (const auto& kv : object)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const char* Value::type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

int64_t Value::as_int64(const char* what) const {
  if (type != Type::Number) throw JsonError(std::string(what) + " must be an integer, got a " + type_name(type));
  for (char c : text)
    if (c == '.' || c == 'e' || c == 'E') throw JsonError(std::string(what) + " must be an integer, got " + text);
  int64_t v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size())
    throw JsonError(std::string(what) + " is out of range: " + text);
  return v;
}

namespace {

class Parser {
 public:
  Parser(std::string_view s, int max_depth) : s_(s), max_depth_(max_depth) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected data after the JSON value");
    return v;
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  int max_depth_;

  [[noreturn]] void fail(const std::string& msg) const {
    throw JsonError("invalid JSON at byte " + std::to_string(pos_) + ": " + msg);
  }
  bool eof() const { return pos_ >= s_.size(); }
  char peek() const { return eof() ? '\0' : s_[pos_]; }
  void skip_ws() {
    while (!eof() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  void expect(char c) {
    if (eof() || s_[pos_] != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
  }

  Value parse_value(int depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_));
    if (eof()) fail("unexpected end of input");
    Value v;
    char c = s_[pos_];
    switch (c) {
      case '{': parse_object(v, depth); break;
      case '[': parse_array(v, depth); break;
      case '"':
        v.type = Value::Type::String;
        v.text = parse_string();
        break;
      case 't':
        literal("true");
        v.type = Value::Type::Bool;
        v.boolean = true;
        break;
      case 'f':
        literal("false");
        v.type = Value::Type::Bool;
        v.boolean = false;
        break;
      case 'n':
        literal("null");
        v.type = Value::Type::Null;
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) parse_number(v);
        else
          fail(std::string("unexpected character 0x") + "0123456789abcdef"[(c >> 4) & 15] + "0123456789abcdef"[c & 15]);
    }
    return v;
  }

  void parse_object(Value& v, int depth) {
    v.type = Value::Type::Object;
    expect('{');
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key");
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      Value item = parse_value(depth + 1);
      v.object.emplace_back(std::move(key), std::move(item));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}');
      check_unique_keys(v);
      return;
    }
  }

  // Duplicate keys by sorting (O(n log n)); comparing each key with all earlier ones took 18 s for
  // an 80 000-key header (issue 12).
  void check_unique_keys(const Value& v) const {
    if (v.object.size() < 2) return;
    std::vector<std::string_view> keys;
    keys.reserve(v.object.size());
    for (const auto& kv : v.object) keys.emplace_back(kv.first);
    std::sort(keys.begin(), keys.end());
    auto d = std::adjacent_find(keys.begin(), keys.end());
    if (d != keys.end()) fail("duplicate key \"" + std::string(*d) + "\" in the object that ends here");
  }

  void parse_array(Value& v, int depth) {
    v.type = Value::Type::Array;
    expect('[');
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      v.array.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']');
      return;
    }
  }

  void parse_number(Value& v) {
    size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("invalid number");
    }
    if (peek() == '.') {
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: digit expected after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: digit expected in exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    v.type = Value::Type::Number;
    v.text.assign(s_.data() + start, pos_ - start);
    double d = 0.0;
    auto r = std::from_chars(v.text.data(), v.text.data() + v.text.size(), d);
    if (r.ec == std::errc::result_out_of_range) {
      // Overflow -> +-inf (rejected by the callers' finiteness checks); underflow -> 0.
      d = std::abs(std::strtod(v.text.c_str(), nullptr)) > 1.0 ? (v.text[0] == '-' ? -INFINITY : INFINITY) : 0.0;
    } else if (r.ec != std::errc() || r.ptr != v.text.data() + v.text.size()) {
      fail("invalid number " + v.text);
    }
    v.number = d;
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      u <<= 4;
      if (c >= '0' && c <= '9') u |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') u |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') u |= unsigned(c - 'A' + 10);
      else fail("invalid hex digit in \\u escape");
    }
    return u;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  // Validates one raw UTF-8 sequence starting at pos_ and appends it.
  void copy_utf8(std::string& out) {
    auto b = [&](size_t i) -> unsigned { return i < s_.size() ? (unsigned char)s_[i] : 0u; };
    unsigned c0 = b(pos_);
    int n;
    uint32_t cp;
    if (c0 < 0x80) {
      n = 1;
      cp = c0;
    } else if ((c0 & 0xE0) == 0xC0) {
      n = 2;
      cp = c0 & 0x1F;
    } else if ((c0 & 0xF0) == 0xE0) {
      n = 3;
      cp = c0 & 0x0F;
    } else if ((c0 & 0xF8) == 0xF0) {
      n = 4;
      cp = c0 & 0x07;
    } else fail("invalid UTF-8");
    if (pos_ + n > s_.size()) fail("truncated UTF-8 sequence");
    for (int i = 1; i < n; ++i) {
      unsigned c = b(pos_ + i);
      if ((c & 0xC0) != 0x80) fail("invalid UTF-8");
      cp = (cp << 6) | (c & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("invalid UTF-8 (overlong or surrogate)");
    out.append(s_.data() + pos_, size_t(n));
    pos_ += size_t(n);
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    for (;;) {
      if (eof()) fail("unterminated string");
      unsigned char c = (unsigned char)s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("raw control character in string");
      if (c != '\\') {
        copy_utf8(out);
        continue;
      }
      ++pos_;
      if (eof()) fail("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired low surrogate in \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          if (e > 0x20 && e < 0x7f) fail(std::string("invalid escape \\") + e);
          fail("invalid escape (byte 0x" + std::string(1, "0123456789abcdef"[(e >> 4) & 15]) +
               "0123456789abcdef"[e & 15] + ")");
      }
    }
  }
};

}  // namespace

Value parse(std::string_view text, int max_depth) { return Parser(text, max_depth).parse_document(); }

}  // namespace unet_rt::json
