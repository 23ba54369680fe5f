//===- Status.cpp - Error values of every fallible runtime call -----------===//
//
// A user error prints as its message alone; an internal error adds the
// file:line that raised it, since that is what a bug report needs.
//
//===----------------------------------------------------------------------===//
#include "colossal/runtime/Status.h"

namespace colossal::runtime {

std::string Status::toString() const {
  if (code_ == StatusCode::kOk)
    return "ok";
  if (code_ != StatusCode::kInternal || !file_)
    return message_;
  return message_ + " (" + file_ + ":" + std::to_string(line_) + ")";
}

const char *statusCodeName(StatusCode code) {
  switch (code) {
  case StatusCode::kOk:
    return "ok";
  case StatusCode::kInvalidArgument:
    return "invalid_argument";
  case StatusCode::kCorruptPlan:
    return "corrupt_plan";
  case StatusCode::kNotFound:
    return "not_found";
  case StatusCode::kUnsupported:
    return "unsupported";
  case StatusCode::kIoError:
    return "io_error";
  case StatusCode::kInternal:
    return "internal";
  }
  return "unknown";
}

} // namespace colossal::runtime
