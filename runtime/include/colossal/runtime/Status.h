//===- Status.h - Error values returned by every fallible runtime call -----===//
//
// The runtime never throws and never exits from library code: a fallible call
// returns a Status (code, message, file:line) and the caller decides. The
// COLOSSAL_RETURN_IF_ERROR macros keep call sites short.
//
//===----------------------------------------------------------------------===//
#ifndef COLOSSAL_RUNTIME_STATUS_H
#define COLOSSAL_RUNTIME_STATUS_H

#include <string>
#include <utility>

namespace colossal::runtime {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument, ///< bad user input: flags, input files, shapes
  kCorruptPlan,     ///< a plan file that fails validation
  kNotFound,        ///< a file or a named tensor that is not there
  kUnsupported,     ///< valid input this build cannot run
  kIoError,         ///< the OS refused a read or write
  kInternal,        ///< an invariant broke: a bug in colossal
};

/// The result of a fallible call. An ok Status carries no message.
class Status {
public:
  Status() = default;
  Status(StatusCode code, std::string message, const char *file = nullptr,
         int line = 0)
      : code_(code), message_(std::move(message)), file_(file), line_(line) {}

  static Status ok() { return Status(); }
  bool isOk() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return isOk(); }
  StatusCode code() const { return code_; }
  const std::string &message() const { return message_; }
  /// "message" for user errors, "message (file:line)" for internal ones.
  std::string toString() const;

private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  const char *file_ = nullptr;
  int line_ = 0;
};

const char *statusCodeName(StatusCode code);

} // namespace colossal::runtime

#define COLOSSAL_ERROR(code, msg)                                             \
  ::colossal::runtime::Status(::colossal::runtime::StatusCode::code, (msg),  \
                              __FILE__, __LINE__)

#define COLOSSAL_RETURN_IF_ERROR(expr)                                        \
  do {                                                                        \
    ::colossal::runtime::Status colossalStatus_ = (expr);                     \
    if (!colossalStatus_.isOk())                                              \
      return colossalStatus_;                                                 \
  } while (0)

#endif // COLOSSAL_RUNTIME_STATUS_H
