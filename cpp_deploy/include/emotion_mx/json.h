#pragma once
// A small, self-contained JSON reader (RFC 8259 values; \uXXXX escapes incl. surrogate pairs).
// Enough for model.json sidecars; no external dependency.
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "emotion_mx/error.h"

namespace emotion_mx::json {

class Value;
using Array = std::vector<Value>;
using Object = std::map<std::string, Value>;

class Value {
 public:
  Value() = default;  // null
  explicit Value(bool b) : v_(b) {}
  explicit Value(double d) : v_(d) {}
  explicit Value(std::string s) : v_(std::move(s)) {}
  explicit Value(Array a) : v_(std::make_shared<Array>(std::move(a))) {}
  explicit Value(Object o) : v_(std::make_shared<Object>(std::move(o))) {}

  bool is_null() const { return std::holds_alternative<std::monostate>(v_); }
  bool is_number() const { return std::holds_alternative<double>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<Array>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v_); }

  // Typed access; throws Error naming `what` when the type is wrong.
  double number(const std::string& what = "value") const;
  const std::string& string(const std::string& what = "value") const;
  const Array& array(const std::string& what = "value") const;
  const Object& object(const std::string& what = "value") const;
  /// Member of an object; throws Error if absent.
  const Value& at(const std::string& key) const;
  bool contains(const std::string& key) const;

 private:
  std::variant<std::monostate, bool, double, std::string, std::shared_ptr<Array>,
               std::shared_ptr<Object>>
      v_;
};

/// Parses a complete JSON document; throws Error("... at offset N") on malformed input.
Value parse(const std::string& text);

}  // namespace emotion_mx::json
