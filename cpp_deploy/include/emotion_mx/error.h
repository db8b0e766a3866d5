#pragma once
#include <stdexcept>
#include <string>

namespace emotion_mx {

/// Every failure of the deployment library (MXNet error, bad file, bad input) is an Error whose
/// what() is one line a user can act on.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace emotion_mx
