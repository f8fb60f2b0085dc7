// A small, strict JSON parser (RFC 8259) for the model file header: no external dependency.
//
// Strict means: exactly one value with optional surrounding whitespace, no trailing commas, no
// comments, no NaN/Infinity, no leading zeros, no raw control characters in strings, valid UTF-8,
// paired \u surrogates, no duplicate object keys, nesting depth limited (no stack exhaustion on
// hostile input). Errors throw JsonError with the byte offset.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace unet_rt::json {

class JsonError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;  // Number: the value as a double
  std::string text;     // Number: its literal text (for exact integers); String: the decoded UTF-8
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in file order, keys unique

  bool is_null() const { return type == Type::Null; }
  bool is_string() const { return type == Type::String; }
  bool is_number() const { return type == Type::Number; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }
  // nullptr when absent (or not an object).
  const Value* find(std::string_view key) const;
  // The exact integer value of a Number written without fraction or exponent; throws otherwise
  // (also on overflow of int64).
  int64_t as_int64(const char* what) const;
  static const char* type_name(Type t);
};

Value parse(std::string_view text, int max_depth = 64);

}  // namespace unet_rt::json
