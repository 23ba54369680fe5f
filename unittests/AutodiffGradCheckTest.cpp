//===- AutodiffGradCheckTest.cpp - Finite-difference checks of autodiff ---===//
//
// Every gradient rule of `colossal-autodiff`, checked against central finite
// differences of the forward. Each case is a small `@main` in MLIR text: f64
// weights, the op under test, and loss = reduce_sum(y * R) with a fixed
// random constant R (so that every element of y matters). The pass turns it
// into `@micro_step`; a small interpreter (below) runs that with random
// weights and reads `grad.<w>` (count x dL/dw, stored in f32), and runs the
// original `@main` with each weight element moved by +-h (h = 1e-6, f64).
// The interpreter evaluates every table op with the runtime's CPU kernels
// (`evaluateOp`), so what is checked is the rule as the compiler emits it
// together with the kernels a plan would run.
//
// Points stay away from kinks (relu/abs at 0, max/min ties, reduce_max ties)
// where the derivative is not defined.
//
//===----------------------------------------------------------------------===//

#include "colossal/Dialect/Graph/GraphDialect.h"
#include "colossal/Dialect/OpTableBridge.h"
#include "colossal/Transforms/Passes.h"
#include "colossal/runtime/Kernels.h"
#include "colossal/runtime/PlanFormat.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/DenseMap.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace mlir;
using namespace mlir::colossal;
namespace rt = ::colossal::runtime;

namespace {

using Dims = std::vector<int64_t>;
/// Weights and states by name: what `colossal.weight`/`colossal.state` read
/// and `colossal.assign` writes.
using Store = std::map<std::string, rt::HostTensor>;

//===----------------------------------------------------------------------===//
// The interpreter
//===----------------------------------------------------------------------===//

/// A DenseElementsAttr as a host tensor.
std::optional<rt::HostTensor> tensorFromAttr(DenseElementsAttr attr) {
  auto type = toTensorType(attr.getType());
  if (!type)
    return std::nullopt;
  rt::HostTensor t(*type);
  rt::TensorRef ref = t.ref();
  int64_t n = type->numElements();
  Type et = attr.getElementType();
  if (isa<FloatType>(et)) {
    auto values = attr.getValues<APFloat>();
    for (int64_t i = 0; i < n; ++i) {
      APFloat v = values[i];
      bool lost = false;
      v.convert(APFloat::IEEEdouble(), APFloat::rmNearestTiesToEven, &lost);
      rt::storeFromDouble(ref, i, v.convertToDouble());
    }
    return t;
  }
  auto values = attr.getValues<APInt>();
  for (int64_t i = 0; i < n; ++i) {
    APInt v = values[i];
    rt::storeFromInt64(ref, i,
                       v.getBitWidth() == 1 || et.isUnsignedInteger()
                           ? static_cast<int64_t>(v.getZExtValue())
                           : v.getSExtValue());
  }
  return t;
}

/// Runs the body of `func` in order on host tensors: weights and states read
/// `store` (a state that is not there reads as zeros), constants come from
/// their attribute, table ops run the CPU kernel, `colossal.assign` writes
/// `store`. Returns the values of `func.return`, or nullopt with `error` set.
std::optional<std::vector<rt::HostTensor>>
interpret(func::FuncOp func, Store &store,
          const std::vector<rt::HostTensor> &args, std::string &error) {
  llvm::DenseMap<Value, rt::HostTensor> env;
  Block &body = func.getBody().front();
  if (args.size() != body.getNumArguments()) {
    error = "wrong number of arguments";
    return std::nullopt;
  }
  for (auto [i, arg] : llvm::enumerate(body.getArguments()))
    env[arg] = args[i];
  auto typeOf = [](Value v) { return *toTensorType(v.getType()); };
  auto describe = [](Operation &op) {
    std::string s;
    llvm::raw_string_ostream os(s);
    op.print(os, OpPrintingFlags().skipRegions());
    return s;
  };

  for (Operation &op : body) {
    if (auto w = dyn_cast<graph::WeightOp>(op)) {
      auto it = store.find(w.getName().str());
      if (it == store.end() || it->second.type != typeOf(w.getResult())) {
        error = "no value of the right type for " + describe(op);
        return std::nullopt;
      }
      env[w.getResult()] = it->second;
      continue;
    }
    if (auto s = dyn_cast<graph::StateOp>(op)) {
      auto it = store.find(s.getName().str());
      rt::TensorType type = typeOf(s.getResult());
      if (it == store.end()) {
        env[s.getResult()] = rt::HostTensor(type); // states start at zero
        continue;
      }
      if (it->second.type != type) {
        error = "state of the wrong type for " + describe(op);
        return std::nullopt;
      }
      env[s.getResult()] = it->second;
      continue;
    }
    if (auto c = dyn_cast<graph::ConstantOp>(op)) {
      auto dense = dyn_cast<DenseElementsAttr>(c.getValue());
      std::optional<rt::HostTensor> t;
      if (dense)
        t = tensorFromAttr(dense);
      if (!t) {
        error = "unsupported constant " + describe(op);
        return std::nullopt;
      }
      env[c.getResult()] = std::move(*t);
      continue;
    }
    if (auto a = dyn_cast<graph::AssignOp>(op)) {
      store[a.getName().str()] = env.lookup(a.getValue());
      continue;
    }
    if (auto ret = dyn_cast<func::ReturnOp>(op)) {
      std::vector<rt::HostTensor> results;
      for (Value v : ret.getOperands())
        results.push_back(env.lookup(v));
      return results;
    }
    StringRef name = op.getName().stripDialect();
    const rt::OpInfo *info =
        op.getName().getDialectNamespace() == "colossal"
            ? rt::lookupOp(std::string_view(name.data(), name.size()))
            : nullptr;
    if (!info) {
      error = "not an op-table op: " + describe(op);
      return std::nullopt;
    }
    SmallVector<Type> resultTypes(op.getResultTypes());
    FailureOr<rt::Attrs> attrs = attrsFromMlir(
        op.getLoc(), info->kind, op.getAttrDictionary(), resultTypes);
    if (failed(attrs)) {
      error = "bad attributes on " + describe(op);
      return std::nullopt;
    }
    std::vector<rt::HostTensor> inputs, outputs;
    for (Value v : op.getOperands())
      inputs.push_back(env.lookup(v));
    rt::Status st = rt::evaluateOp(*attrs, inputs, outputs);
    if (!st.isOk()) {
      error = st.toString() + " in " + describe(op);
      return std::nullopt;
    }
    if (outputs.size() != op.getNumResults()) {
      error = "wrong result count from " + describe(op);
      return std::nullopt;
    }
    for (auto [i, r] : llvm::enumerate(op.getResults())) {
      if (outputs[i].type != typeOf(r)) {
        error = "kernel result type " + outputs[i].type.toString() +
                " differs from the IR in " + describe(op);
        return std::nullopt;
      }
      env[r] = std::move(outputs[i]);
    }
  }
  error = "no func.return";
  return std::nullopt;
}

std::vector<double> toDoubles(const rt::HostTensor &t) {
  std::vector<double> out(t.type.numElements());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = rt::loadAsDouble(t.ref(), i);
  return out;
}

//===----------------------------------------------------------------------===//
// Writing the IR
//===----------------------------------------------------------------------===//

std::string type(const Dims &dims, const std::string &elem = "f64") {
  std::string s = "tensor<";
  for (int64_t d : dims)
    s += std::to_string(d) + "x";
  return s + elem + ">";
}

std::string formatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17e", v);
  return buf;
}

void appendNested(std::string &out, const Dims &dims, size_t d,
                  const std::vector<std::string> &elems, size_t &next) {
  if (d == dims.size()) {
    out += elems[next++];
    return;
  }
  out += "[";
  for (int64_t i = 0; i < dims[d]; ++i) {
    if (i)
      out += ", ";
    appendNested(out, dims, d + 1, elems, next);
  }
  out += "]";
}

/// `dense<...>` with the nesting of `dims`.
std::string dense(const Dims &dims, const std::vector<std::string> &elems) {
  std::string out = "dense<";
  size_t next = 0;
  appendNested(out, dims, 0, elems, next);
  return out + ">";
}

/// `%name = colossal.constant dense<...> : tensor<dims x f64>`
std::string f64Constant(const std::string &name, const Dims &dims,
                        const std::vector<double> &values) {
  std::vector<std::string> elems;
  for (double v : values)
    elems.push_back(formatDouble(v));
  return "  " + name + " = colossal.constant " + dense(dims, elems) + " : " +
         type(dims) + "\n";
}

/// `%name = colossal.constant dense<...> : tensor<dims x i64>` (or `elem`)
std::string i64Constant(const std::string &name, const Dims &dims,
                        const std::vector<int64_t> &values,
                        const std::string &elem = "i64") {
  std::vector<std::string> elems;
  for (int64_t v : values)
    elems.push_back(std::to_string(v));
  return "  " + name + " = colossal.constant " + dense(dims, elems) + " : " +
         type(dims, elem) + "\n";
}

/// `%<name> = colossal.weight "<name>" {trainable} : tensor<dims x f64>`
std::string weight(const std::string &name, const Dims &dims,
                   const std::string &attrs = "{trainable}") {
  return "  %" + name + " = colossal.weight \"" + name + "\" " + attrs + " : " +
         type(dims) + "\n";
}

struct Operand {
  std::string name;
  std::string type;
};

/// `%result = colossal.<op> operands {attrs} : (types) -> resultType`
std::string op(const std::string &result, const std::string &name,
               const std::vector<Operand> &operands,
               const std::string &resultType, const std::string &attrs = "") {
  std::string s = "  " + result + " = colossal." + name;
  for (size_t i = 0; i < operands.size(); ++i)
    s += (i ? ", " : " ") + operands[i].name;
  if (!attrs.empty())
    s += " {" + attrs + "}";
  s += " : (";
  for (size_t i = 0; i < operands.size(); ++i)
    s += (i ? ", " : "") + operands[i].type;
  return s + ") -> " + resultType + "\n";
}

std::string i64List(const Dims &v) {
  std::string s = "array<i64";
  for (size_t i = 0; i < v.size(); ++i)
    s += (i ? ", " : ": ") + std::to_string(v[i]);
  return s + ">";
}

/// `@main` returning loss = reduce_sum(result * R), R a fixed random
/// constant of magnitude in [0.5, 1.5] with random signs.
std::string withLoss(const std::string &body, const std::string &result,
                     const Dims &dims, uint64_t seed = 7) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mag(0.5, 1.5);
  std::vector<double> r(rt::TensorType{rt::DType::kF64, dims}.numElements());
  for (double &v : r)
    v = (rng() & 1 ? -1.0 : 1.0) * mag(rng);
  Dims axes;
  for (int64_t d = 0; d < static_cast<int64_t>(dims.size()); ++d)
    axes.push_back(d);
  std::string t = type(dims);
  return "func.func @main() -> (tensor<f64> {colossal.name = \"loss\"}) {\n" +
         body + f64Constant("%__r", dims, r) +
         op("%__p", "mul", {{result, t}, {"%__r", t}}, t) +
         op("%loss", "reduce_sum", {{"%__p", t}}, "tensor<f64>",
            "axes = " + i64List(axes) + ", keepdims = 0 : i64") +
         "  return %loss : tensor<f64>\n}\n";
}

//===----------------------------------------------------------------------===//
// The check
//===----------------------------------------------------------------------===//

/// How a weight's elements are drawn.
struct Init {
  double lo = -1.0, hi = 1.0;
  /// Redraw while |x| < minAbs: keeps points away from kinks at 0.
  double minAbs = 0.0;
  /// Fixed values, when not empty (row-major).
  std::vector<double> values;
};

struct Tolerance {
  double h = 1e-6;
  double rtol = 1e-6;
  /// Absolute slack, in units of max(1, max |expected|): the finite
  /// difference's rounding error is about eps * |loss| / h ~ 1e-10.
  double atol = 1e-8;
};

/// Everything one check computed.
struct GradRun {
  OwningOpRef<ModuleOp> original, micro;
  std::string microText;
  std::vector<std::string> diagnostics;
  Store point; ///< the weights the gradients are taken at
  Store after; ///< weights and states after one micro_step
  double loss = 0, microLoss = 0, count = 0;
  /// grad.<w> read back (absent: the pass made no such state).
  std::map<std::string, std::vector<double>> grad;
  /// Central differences of the original loss, per trainable weight.
  std::map<std::string, std::vector<double>> fd;
};

class AutodiffGradCheck : public ::testing::Test {
protected:
  AutodiffGradCheck() {
    ctx.loadDialect<graph::ColossalDialect, func::FuncDialect>();
  }

  OwningOpRef<ModuleOp> parse(const std::string &text) {
    std::string errors;
    ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
      errors += d.str() + "\n";
      return success();
    });
    auto m = parseSourceString<ModuleOp>(text, ParserConfig(&ctx));
    if (!m)
      ADD_FAILURE() << "cannot parse:\n" << text << "\n" << errors;
    return m;
  }

  /// Runs colossal-autodiff on a copy of `original`; fills `run.micro`
  /// (null when the pass fails) and `run.diagnostics` ("error: ...",
  /// "remark: ...").
  LogicalResult differentiate(ModuleOp original, GradRun &run) {
    run.micro = OwningOpRef<ModuleOp>(original.clone());
    ScopedDiagnosticHandler handler(&ctx, [&](Diagnostic &d) {
      const char *sev = d.getSeverity() == DiagnosticSeverity::Error ? "error"
                        : d.getSeverity() == DiagnosticSeverity::Remark
                            ? "remark"
                            : "other";
      std::string s = std::string(sev) + ": " + d.str();
      for (Diagnostic &note : d.getNotes())
        s += "\n  note: " + note.str();
      run.diagnostics.push_back(s);
      return success();
    });
    PassManager pm(&ctx);
    pm.addPass(createAutodiffPass());
    if (failed(pm.run(*run.micro))) {
      run.micro = nullptr;
      return failure();
    }
    llvm::raw_string_ostream os(run.microText);
    run.micro->print(os);
    return success();
  }

  static func::FuncOp lookup(ModuleOp m, StringRef name) {
    return m.lookupSymbol<func::FuncOp>(name);
  }

  static int lossIndex(func::FuncOp f) {
    for (unsigned i = 0; i < f.getNumResults(); ++i)
      if (auto n = f.getResultAttrOfType<StringAttr>(i, "colossal.name"))
        if (n.getValue() == "loss")
          return i;
    return -1;
  }

  /// The loss of `f` (the original @main) at `weights`.
  static std::optional<double> evalLoss(func::FuncOp f, Store weights,
                                        const std::vector<rt::HostTensor> &args,
                                        std::string &error) {
    auto results = interpret(f, weights, args, error);
    int i = lossIndex(f);
    if (!results || i < 0)
      return std::nullopt;
    return rt::loadAsDouble((*results)[i].ref(), 0);
  }

  /// Parses `text`, draws every weight by `inits` (default uniform
  /// [-1, 1]), runs the pass and micro_step, and takes central differences
  /// of the original for every trainable weight. False (with a failure
  /// recorded) when anything on the way breaks.
  bool run(const std::string &text, const std::map<std::string, Init> &inits,
           GradRun &r, const Tolerance &tol = {},
           const std::vector<rt::HostTensor> &args = {}, uint64_t seed = 1) {
    r.original = parse(text);
    if (!r.original)
      return false;
    func::FuncOp main = lookup(*r.original, "main");
    if (!main) {
      ADD_FAILURE() << "no @main";
      return false;
    }
    // Draw each distinct weight name once, in name order (deterministic).
    std::map<std::string, rt::TensorType> weightTypes;
    std::map<std::string, bool> trainable;
    main.walk([&](graph::WeightOp w) {
      weightTypes[w.getName().str()] = *toTensorType(w.getType());
      trainable[w.getName().str()] |= w.getTrainable();
    });
    std::mt19937_64 rng(seed);
    for (auto &[name, t] : weightTypes) {
      Init init;
      if (auto it = inits.find(name); it != inits.end())
        init = it->second;
      rt::HostTensor h(t);
      std::uniform_real_distribution<double> u(init.lo, init.hi);
      for (int64_t i = 0; i < t.numElements(); ++i) {
        double v;
        if (!init.values.empty()) {
          if (init.values.size() != static_cast<size_t>(t.numElements())) {
            ADD_FAILURE() << "weight " << name << " needs " << t.numElements()
                          << " values";
            return false;
          }
          v = init.values[i];
        } else {
          do
            v = u(rng);
          while (std::fabs(v) < init.minAbs);
        }
        rt::storeFromDouble(h.ref(), i, v);
      }
      r.point[name] = std::move(h);
    }

    if (failed(differentiate(*r.original, r))) {
      std::string all;
      for (auto &d : r.diagnostics)
        all += d + "\n";
      ADD_FAILURE() << "colossal-autodiff failed:\n" << all << "on\n" << text;
      return false;
    }
    func::FuncOp micro = lookup(*r.micro, rt::kMicroStepProgram);
    if (!micro) {
      ADD_FAILURE() << "no @micro_step after the pass:\n" << r.microText;
      return false;
    }
    std::string error;
    r.after = r.point;
    auto results = interpret(micro, r.after, args, error);
    if (!results || results->size() != 2) {
      ADD_FAILURE() << "interpreting micro_step: " << error << "\n"
                    << r.microText;
      return false;
    }
    r.microLoss = rt::loadAsDouble((*results)[0].ref(), 0);
    r.count = rt::loadAsDouble((*results)[1].ref(), 0);
    for (auto &[name, t] : weightTypes) {
      auto it = r.after.find("grad." + name);
      if (it != r.after.end())
        r.grad[name] = toDoubles(it->second);
    }

    auto loss = evalLoss(main, r.point, args, error);
    if (!loss) {
      ADD_FAILURE() << "interpreting main: " << error;
      return false;
    }
    r.loss = *loss;
    for (auto &[name, t] : weightTypes) {
      if (!trainable[name])
        continue;
      Store w = r.point;
      rt::TensorRef ref = w[name].ref();
      std::vector<double> &fd = r.fd[name];
      for (int64_t i = 0; i < t.numElements(); ++i) {
        double x0 = rt::loadAsDouble(ref, i);
        double xp = x0 + tol.h, xm = x0 - tol.h;
        rt::storeFromDouble(ref, i, xp);
        auto lp = evalLoss(main, w, args, error);
        rt::storeFromDouble(ref, i, xm);
        auto lm = evalLoss(main, w, args, error);
        rt::storeFromDouble(ref, i, x0);
        if (!lp || !lm) {
          ADD_FAILURE() << "interpreting main: " << error;
          return false;
        }
        fd.push_back((*lp - *lm) / (xp - xm));
      }
    }
    return true;
  }

  /// grad.<w> == count x finite difference, elementwise, for every
  /// trainable weight (`skip`: element indices not compared, by weight name).
  static ::testing::AssertionResult
  gradsMatch(const GradRun &r, const Tolerance &tol = {},
             const std::map<std::string, std::vector<int64_t>> &skip = {}) {
    std::ostringstream msg;
    msg.precision(12);
    bool ok = true;
    if (std::fabs(r.microLoss - r.loss) > 1e-12 * (1 + std::fabs(r.loss))) {
      ok = false;
      msg << "\n  micro_step loss " << r.microLoss << " != @main loss "
          << r.loss;
    }
    for (auto &[name, fd] : r.fd) {
      auto it = r.grad.find(name);
      if (it == r.grad.end()) {
        ok = false;
        msg << "\n  no grad." << name << " state after micro_step";
        continue;
      }
      const std::vector<double> &g = it->second;
      double scale = 1.0, largest = 0.0;
      for (double v : fd) {
        scale = std::max(scale, std::fabs(r.count * v));
        largest = std::max(largest, std::fabs(v));
      }
      if (!fd.empty() && largest < 1e-6) {
        // A check of zeros against zeros proves nothing.
        ok = false;
        msg << "\n  the loss does not depend on " << name
            << ": the case is vacuous";
      }
      int bad = 0;
      std::vector<int64_t> skipped;
      if (auto s = skip.find(name); s != skip.end())
        skipped = s->second;
      for (size_t i = 0; i < fd.size(); ++i) {
        if (llvm::is_contained(skipped, static_cast<int64_t>(i)))
          continue;
        double expected = r.count * fd[i];
        double err = std::fabs(g[i] - expected);
        if (!(err <= tol.rtol * std::fabs(expected) + tol.atol * scale)) {
          ok = false;
          if (bad++ < 8)
            msg << "\n  grad." << name << "[" << i << "]: autodiff " << g[i]
                << ", finite difference " << expected;
        }
      }
      if (bad > 8)
        msg << "\n  ... " << bad << " elements of grad." << name
            << " differ in all";
    }
    if (ok)
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << msg.str() << "\n(count " << r.count << ")\nmicro_step:\n"
           << r.microText;
  }

  /// One op under test: `body` defines `result` (of `dims`) from weights.
  ::testing::AssertionResult
  check(const std::string &body, const std::string &result, const Dims &dims,
        const std::map<std::string, Init> &inits = {},
        const Tolerance &tol = {}) {
    GradRun r;
    if (!run(withLoss(body, result, dims), inits, r, tol))
      return ::testing::AssertionFailure() << "the check did not run";
    auto m = gradsMatch(r, tol);
    if (!m)
      return m << "\n@main:\n" << withLoss(body, result, dims);
    return m;
  }

  MLIRContext ctx;
};

// Ranges that keep each op away from its singular points and kinks.
const Init kAnywhere{-1.5, 1.5};
const Init kPositive{0.5, 2.0};
const Init kAwayFromZero{-1.5, 1.5, 0.2};

std::string unaryBody(const std::string &name, const Dims &dims,
                      const std::string &attrs = "") {
  return weight("w0", dims) +
         op("%y", name, {{"%w0", type(dims)}}, type(dims), attrs);
}

std::string binaryBody(const std::string &name, const Dims &a, const Dims &b,
                       const Dims &out) {
  return weight("w0", a) + weight("w1", b) +
         op("%y", name, {{"%w0", type(a)}, {"%w1", type(b)}}, type(out));
}

//===----------------------------------------------------------------------===//
// Elementwise binary ops, with broadcasting both ways
//===----------------------------------------------------------------------===//

struct BroadcastCase {
  Dims a, b, out;
};
const BroadcastCase kBroadcastCases[] = {
    {{2, 3}, {2, 3}, {2, 3}}, // same shape
    {{2, 1}, {3}, {2, 3}},    // each operand broadcast along another dim
    {{}, {2, 3}, {2, 3}},     // a scalar
    {{2, 3, 4}, {3, 1}, {2, 3, 4}},
};

TEST_F(AutodiffGradCheck, AddSubMul) {
  for (const char *name : {"add", "sub", "mul"})
    for (const BroadcastCase &c : kBroadcastCases) {
      SCOPED_TRACE(std::string(name) + " " + type(c.a) + ", " + type(c.b));
      EXPECT_TRUE(check(binaryBody(name, c.a, c.b, c.out), "%y", c.out));
    }
}

TEST_F(AutodiffGradCheck, Div) {
  for (const BroadcastCase &c : kBroadcastCases) {
    SCOPED_TRACE(type(c.a) + " / " + type(c.b));
    EXPECT_TRUE(check(binaryBody("div", c.a, c.b, c.out), "%y", c.out,
                      {{"w1", {-2.0, 2.0, 0.5}}}));
  }
}

TEST_F(AutodiffGradCheck, PowBaseAndExponent) {
  // Both operands trainable: d/dbase = c x^(c-1), d/dexp = y log x.
  for (const BroadcastCase &c : kBroadcastCases) {
    SCOPED_TRACE(type(c.a) + " ^ " + type(c.b));
    EXPECT_TRUE(check(binaryBody("pow", c.a, c.b, c.out), "%y", c.out,
                      {{"w0", kPositive}, {"w1", kAnywhere}}));
  }
}

TEST_F(AutodiffGradCheck, PowBaseOnly) {
  // A constant exponent (integer and fractional values, broadcast).
  std::string body =
      weight("w0", {2, 3}) + f64Constant("%c", {3}, {2.0, 3.0, -0.5}) +
      op("%y", "pow", {{"%w0", type({2, 3})}, {"%c", type({3})}}, type({2, 3}));
  EXPECT_TRUE(check(body, "%y", {2, 3}, {{"w0", kPositive}}));
  // A negative base with integer exponents (x^(c-1) stays real).
  std::string negative =
      weight("w0", {2, 3}) + f64Constant("%c", {3}, {2.0, 3.0, -1.0}) +
      op("%y", "pow", {{"%w0", type({2, 3})}, {"%c", type({3})}}, type({2, 3}));
  EXPECT_TRUE(check(negative, "%y", {2, 3}, {{"w0", {-2.0, -0.5}}}));
}

TEST_F(AutodiffGradCheck, PowExponentOnly) {
  std::string body =
      f64Constant("%b", {2, 1}, {0.7, 2.5}) + weight("w0", {2, 3}) +
      op("%y", "pow", {{"%b", type({2, 1})}, {"%w0", type({2, 3})}},
         type({2, 3}));
  EXPECT_TRUE(check(body, "%y", {2, 3}));
}

TEST_F(AutodiffGradCheck, ConstantFirstOperand) {
  // Only the (broadcast) second operand is trainable: sub negates, div
  // takes -y/b, max/min give it the elements where it wins.
  std::vector<double> cs{0.35, -0.8, 1.25, -0.45, 0.05, 0.9};
  for (const char *name : {"add", "sub", "mul", "div", "max", "min"}) {
    std::string body =
        f64Constant("%c", {2, 3}, cs) + weight("w1", {3}) +
        op("%y", name, {{"%c", type({2, 3})}, {"%w1", type({3})}},
           type({2, 3}));
    SCOPED_TRACE(body);
    // >= 0.15 from every constant (no max/min ties), away from 0 (div).
    EXPECT_TRUE(
        check(body, "%y", {2, 3}, {{"w1", {0, 0, 0, {-1.1, 0.6, 0.2}}}}));
  }
}

TEST_F(AutodiffGradCheck, MaxMin) {
  // No ties: every pair (including broadcast pairs) differs by >= 0.15.
  const Init a{0, 0, 0, {-0.9, 0.35, 1.2, -0.2, 0.75, -1.4}};
  const Init b{0, 0, 0, {-0.5, 0.1, 0.95}};
  const Init bSame{0, 0, 0, {-0.5, 0.1, 0.95, 0.3, -1.0, 0.2}};
  for (const char *name : {"max", "min"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(check(binaryBody(name, {2, 3}, {2, 3}, {2, 3}), "%y", {2, 3},
                      {{"w0", a}, {"w1", bSame}}));
    EXPECT_TRUE(check(binaryBody(name, {2, 3}, {3}, {2, 3}), "%y", {2, 3},
                      {{"w0", a}, {"w1", b}}));
    // [6] against [3, 1]: each b meets every a.
    const Init bCol{0, 0, 0, {-0.55, 0.55, 1.0}};
    EXPECT_TRUE(check(binaryBody(name, {6}, {3, 1}, {3, 6}), "%y", {3, 6},
                      {{"w0", a}, {"w1", bCol}}));
  }
}

TEST_F(AutodiffGradCheck, Where) {
  // A constant mask; x and y broadcast against it.
  std::string body =
      "  %c = colossal.constant dense<[[true, false, true], [false, false, "
      "true]]> : tensor<2x3xi1>\n" +
      weight("w0", {3}) + weight("w1", {}) +
      op("%y", "where",
         {{"%c", type({2, 3}, "i1")}, {"%w0", type({3})}, {"%w1", type({})}},
         type({2, 3}));
  EXPECT_TRUE(check(body, "%y", {2, 3}));
}

//===----------------------------------------------------------------------===//
// Elementwise unary ops
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, Unary) {
  const std::pair<const char *, Init> cases[] = {
      {"neg", kAnywhere},
      {"abs", kAwayFromZero},
      {"exp", kAnywhere},
      {"log", kPositive},
      {"sqrt", kPositive},
      {"rsqrt", kPositive},
      {"reciprocal", {-2.0, 2.0, 0.5}},
      {"tanh", kAnywhere},
      {"sigmoid", {-3.0, 3.0}},
      {"relu", kAwayFromZero},
      {"erf", kAnywhere},
      {"sin", {-3.0, 3.0}},
      {"cos", {-3.0, 3.0}},
      {"identity", kAnywhere},
  };
  for (const auto &[name, init] : cases) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(check(unaryBody(name, {2, 3}), "%y", {2, 3}, {{"w0", init}}));
  }
}

TEST_F(AutodiffGradCheck, Gelu) {
  for (int approximate : {0, 1}) {
    SCOPED_TRACE("approximate = " + std::to_string(approximate));
    EXPECT_TRUE(check(
        unaryBody("gelu", {3, 4},
                  "approximate = " + std::to_string(approximate) + " : i64"),
        "%y", {3, 4}, {{"w0", {-3.0, 3.0}}}));
  }
}

TEST_F(AutodiffGradCheck, CastF64ToF64) {
  EXPECT_TRUE(check(unaryBody("cast", {2, 3}), "%y", {2, 3}));
}

TEST_F(AutodiffGradCheck, CastThroughF32) {
  // f64 -> f32 -> f64 rounds to f32, so a step of 1e-6 is lost in the
  // rounding: difference over h = 1e-2 (the loss is linear in the cast) and
  // allow f32 rounding (6e-8 |x| / h ~ 1e-5 relative).
  std::string body =
      weight("w0", {2, 3}) +
      op("%a", "cast", {{"%w0", type({2, 3})}}, type({2, 3}, "f32")) +
      op("%y", "cast", {{"%a", type({2, 3}, "f32")}}, type({2, 3}));
  Tolerance tol;
  tol.h = 1e-2;
  tol.rtol = 1e-4;
  tol.atol = 1e-5;
  EXPECT_TRUE(check(body, "%y", {2, 3}, {}, tol));
}

//===----------------------------------------------------------------------===//
// matmul
//===----------------------------------------------------------------------===//

/// a: batchA ++ [M, K] (or [K, M] transposed), b: batchB ++ [K, N] (or
/// [N, K]); both trainable.
std::string matmulBody(const Dims &batchA, const Dims &batchB,
                       const Dims &batchOut, bool tA, bool tB, Dims &outDims) {
  const int64_t M = 2, K = 3, N = 4;
  Dims a = batchA, b = batchB;
  a.push_back(tA ? K : M);
  a.push_back(tA ? M : K);
  b.push_back(tB ? N : K);
  b.push_back(tB ? K : N);
  outDims = batchOut;
  outDims.push_back(M);
  outDims.push_back(N);
  return weight("w0", a) + weight("w1", b) +
         op("%y", "matmul", {{"%w0", type(a)}, {"%w1", type(b)}}, type(outDims),
            "transpose_a = " + std::to_string(tA) +
                " : i64, transpose_b = " + std::to_string(tB) + " : i64");
}

TEST_F(AutodiffGradCheck, MatMulTransposes) {
  for (bool tA : {false, true})
    for (bool tB : {false, true}) {
      SCOPED_TRACE("transpose_a = " + std::to_string(tA) +
                   ", transpose_b = " + std::to_string(tB));
      Dims out;
      std::string body = matmulBody({}, {}, {}, tA, tB, out);
      EXPECT_TRUE(check(body, "%y", out));
    }
}

TEST_F(AutodiffGradCheck, MatMulBatchBroadcast) {
  struct Case {
    Dims batchA, batchB, batchOut;
  };
  const Case cases[] = {
      {{2}, {}, {2}},           // b shared by every batch (one GEMM)
      {{2, 3}, {}, {2, 3}},     // b shared by a batch of two dims
      {{}, {2}, {2}},           // a shared by every batch
      {{2, 1}, {3}, {2, 3}},    // both broadcast
      {{1, 3}, {2, 1}, {2, 3}}, // both broadcast, the other way round
      {{2}, {2}, {2}},          // plain batch
  };
  for (const Case &c : cases)
    for (bool tA : {false, true})
      for (bool tB : {false, true}) {
        Dims out;
        std::string body =
            matmulBody(c.batchA, c.batchB, c.batchOut, tA, tB, out);
        SCOPED_TRACE(body);
        EXPECT_TRUE(check(body, "%y", out));
      }
}

//===----------------------------------------------------------------------===//
// Data movement
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, Transpose) {
  // perm [2, 0, 1] is not its own inverse.
  for (const Dims &perm : {Dims{2, 0, 1}, Dims{1, 2, 0}, Dims{0, 2, 1}}) {
    Dims in{2, 3, 4}, out;
    for (int64_t p : perm)
      out.push_back(in[p]);
    std::string body =
        weight("w0", in) + op("%y", "transpose", {{"%w0", type(in)}}, type(out),
                              "perm = " + i64List(perm));
    SCOPED_TRACE(body);
    EXPECT_TRUE(check(body, "%y", out));
  }
}

TEST_F(AutodiffGradCheck, Reshape) {
  for (const Dims &out : {Dims{6, 4}, Dims{4, 3, 2}, Dims{24}}) {
    std::string body =
        weight("w0", {2, 3, 4}) +
        op("%y", "reshape", {{"%w0", type({2, 3, 4})}}, type(out));
    SCOPED_TRACE(body);
    EXPECT_TRUE(check(body, "%y", out));
  }
}

TEST_F(AutodiffGradCheck, Expand) {
  const std::pair<Dims, Dims> cases[] = {{{3, 1}, {2, 3, 4}},
                                         {{}, {2, 3}},
                                         {{1, 3}, {2, 3}},
                                         {{2, 1, 4}, {2, 3, 4}}};
  for (const auto &[in, out] : cases) {
    std::string body =
        weight("w0", in) + op("%y", "expand", {{"%w0", type(in)}}, type(out));
    SCOPED_TRACE(body);
    EXPECT_TRUE(check(body, "%y", out));
  }
}

TEST_F(AutodiffGradCheck, Slice) {
  struct Case {
    Dims starts, steps, out;
  };
  // Input [4, 5]; element i of dim d reads starts[d] + i * steps[d].
  const Case cases[] = {
      {{1, 0}, {2, 1}, {2, 5}},   // every other row
      {{3, 4}, {-1, -2}, {3, 3}}, // rows 3 2 1, columns 4 2 0
      {{2, 3}, {-2, -1}, {2, 2}}, // rows 2 0, columns 3 2
      {{0, 1}, {1, 3}, {4, 2}},
  };
  for (const Case &c : cases) {
    std::string body =
        weight("w0", {4, 5}) +
        op("%y", "slice", {{"%w0", type({4, 5})}}, type(c.out),
           "starts = " + i64List(c.starts) + ", steps = " + i64List(c.steps));
    SCOPED_TRACE(body);
    EXPECT_TRUE(check(body, "%y", c.out));
  }
}

TEST_F(AutodiffGradCheck, Concat) {
  // A constant between two weights, along the last and the first axis.
  std::string axis1 =
      weight("w0", {2, 3}) + f64Constant("%c", {2, 1}, {0.5, -0.25}) +
      weight("w1", {2, 2}) +
      op("%y", "concat",
         {{"%w0", type({2, 3})}, {"%c", type({2, 1})}, {"%w1", type({2, 2})}},
         type({2, 6}), "axis = 1 : i64");
  EXPECT_TRUE(check(axis1, "%y", {2, 6}));
  std::string axis0 =
      weight("w0", {1, 3}) + weight("w1", {2, 3}) +
      op("%y", "concat", {{"%w1", type({2, 3})}, {"%w0", type({1, 3})}},
         type({3, 3}), "axis = 0 : i64");
  EXPECT_TRUE(check(axis0, "%y", {3, 3}));
  // A zero-size weight in the middle: an empty gradient, and the offsets
  // of the others unchanged.
  std::string empty =
      weight("w0", {2, 3}) + weight("w1", {0, 3}) + weight("w2", {1, 3}) +
      op("%y", "concat",
         {{"%w0", type({2, 3})}, {"%w1", type({0, 3})}, {"%w2", type({1, 3})}},
         type({3, 3}), "axis = 0 : i64");
  EXPECT_TRUE(check(empty, "%y", {3, 3}));
  // One weight twice: both slices of the gradient add up.
  std::string twice =
      weight("w0", {2, 2}) + op("%y", "concat",
                                {{"%w0", type({2, 2})}, {"%w0", type({2, 2})}},
                                type({2, 4}), "axis = 1 : i64");
  EXPECT_TRUE(check(twice, "%y", {2, 4}));
}

TEST_F(AutodiffGradCheck, PadConstant) {
  struct Case {
    Dims in, pads, out;
  };
  const Case cases[] = {
      {{2, 3}, {1, 0, 2, 1}, {5, 4}},    // positive pads
      {{3, 4}, {-1, 1, 0, -1}, {2, 4}},  // crops and pads mixed
      {{3, 4}, {-1, -2, -1, 0}, {1, 2}}, // crops only
  };
  for (const Case &c : cases) {
    std::string body =
        weight("w0", c.in) + op("%y", "pad", {{"%w0", type(c.in)}}, type(c.out),
                                "pads = " + i64List(c.pads) +
                                    ", mode = 0 : i64, value = 5.0e-01 : f64");
    SCOPED_TRACE(body);
    EXPECT_TRUE(check(body, "%y", c.out));
  }
}

TEST_F(AutodiffGradCheck, CumSum) {
  for (int64_t axis : {0, 1})
    for (int exclusive : {0, 1})
      for (int reverse : {0, 1}) {
        std::string body =
            weight("w0", {3, 4}) +
            op("%y", "cumsum", {{"%w0", type({3, 4})}}, type({3, 4}),
               "axis = " + std::to_string(axis) +
                   " : i64, exclusive = " + std::to_string(exclusive) +
                   " : i64, reverse = " + std::to_string(reverse) + " : i64");
        SCOPED_TRACE(body);
        EXPECT_TRUE(check(body, "%y", {3, 4}));
      }
}

TEST_F(AutodiffGradCheck, DefaultAttributesOmitted) {
  // The rules read optional attributes with the ODS defaults when they are
  // absent (IR written by hand or by another pass need not spell them).
  std::string gelu = unaryBody("gelu", {2, 3});
  EXPECT_TRUE(check(gelu, "%y", {2, 3}, {{"w0", {-3.0, 3.0}}}));
  std::string matmul =
      weight("w0", {2, 3}) + weight("w1", {3, 4}) +
      op("%y", "matmul", {{"%w0", type({2, 3})}, {"%w1", type({3, 4})}},
         type({2, 4}));
  EXPECT_TRUE(check(matmul, "%y", {2, 4}));
  std::string cumsum =
      weight("w0", {3, 4}) + op("%y", "cumsum", {{"%w0", type({3, 4})}},
                                type({3, 4}), "axis = 1 : i64");
  EXPECT_TRUE(check(cumsum, "%y", {3, 4}));
  std::string pad =
      weight("w0", {2, 3}) + op("%y", "pad", {{"%w0", type({2, 3})}},
                                type({3, 5}), "pads = array<i64: 1, 2, 0, 0>");
  EXPECT_TRUE(check(pad, "%y", {3, 5}));
}

TEST_F(AutodiffGradCheck, GatherElements) {
  if (!ctx.isOperationRegistered("colossal.gather_elements"))
    GTEST_SKIP() << "colossal.gather_elements is not in this build";
  // Along axis 1 (the indices' axis dim longer than the data's) and axis 0,
  // with repeated and negative indices.
  std::string axis1 =
      weight("w0", {3, 4}) +
      i64Constant("%i", {2, 5}, {0, 3, -1, 3, 1, 2, -4, 0, 0, -2}) +
      op("%y", "gather_elements",
         {{"%w0", type({3, 4})}, {"%i", type({2, 5}, "i64")}}, type({2, 5}),
         "axis = 1 : i64");
  EXPECT_TRUE(check(axis1, "%y", {2, 5}));
  std::string axis0 = weight("w0", {3, 2}) +
                      i64Constant("%i", {4, 2}, {2, 0, -1, 1, 0, 0, 1, -3}) +
                      op("%y", "gather_elements",
                         {{"%w0", type({3, 2})}, {"%i", type({4, 2}, "i64")}},
                         type({4, 2}), "axis = 0 : i64");
  EXPECT_TRUE(check(axis0, "%y", {4, 2}));
}

TEST_F(AutodiffGradCheck, Trilu) {
  if (!ctx.isOperationRegistered("colossal.trilu"))
    GTEST_SKIP() << "colossal.trilu is not in this build";
  for (int upper : {0, 1})
    for (int64_t k : {-1, 0, 2}) {
      std::string body =
          weight("w0", {2, 3, 4}) +
          op("%y", "trilu", {{"%w0", type({2, 3, 4})}}, type({2, 3, 4}),
             "upper = " + std::to_string(upper) +
                 " : i64, k = " + std::to_string(k) + " : i64");
      SCOPED_TRACE(body);
      EXPECT_TRUE(check(body, "%y", {2, 3, 4}));
    }
  // Defaults: lower triangle, main diagonal.
  EXPECT_TRUE(check(unaryBody("trilu", {3, 3}), "%y", {3, 3}));
}

//===----------------------------------------------------------------------===//
// Reductions and normalisations
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, Reductions) {
  // Random values are distinct (no reduce_max/min ties) with gaps far above h.
  // Empty axes reduce nothing (a copy).
  const Dims in{2, 3, 4};
  for (const char *name :
       {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min",
        "reduce_sum_square"})
    for (const Dims &axes :
         {Dims{1}, Dims{0, 2}, Dims{0, 1, 2}, Dims{2}, Dims{}})
      for (int keepdims : {0, 1}) {
        Dims out;
        for (int64_t d = 0; d < 3; ++d) {
          if (!llvm::is_contained(axes, d))
            out.push_back(in[d]);
          else if (keepdims)
            out.push_back(1);
        }
        std::string body =
            weight("w0", in) + op("%y", name, {{"%w0", type(in)}}, type(out),
                                  "axes = " + i64List(axes) + ", keepdims = " +
                                      std::to_string(keepdims) + " : i64");
        SCOPED_TRACE(body);
        EXPECT_TRUE(check(body, "%y", out));
      }
}

TEST_F(AutodiffGradCheck, ReduceMaxTiesShareTheGradient) {
  // Not a finite difference (a tie is a kink): PyTorch's amax rule splits
  // the gradient evenly between the tied maxima. loss = sum(max(x) * R).
  std::string body = weight("w0", {2, 3}) +
                     op("%y", "reduce_max", {{"%w0", type({2, 3})}}, type({2}),
                        "axes = array<i64: 1>, keepdims = 0 : i64");
  GradRun r;
  ASSERT_TRUE(run(withLoss(body, "%y", {2}),
                  {{"w0", {0, 0, 0, {1.0, 3.0, 3.0, 2.0, 2.0, 2.0}}}}, r));
  // Row 0 has two maxima (3, 3): each gets R0 / 2; row 1 three (2, 2, 2):
  // each gets R1 / 3. R0 and R1 are read back from the shares and checked
  // against the loss below.
  ASSERT_EQ(r.grad.count("w0"), 1u);
  const std::vector<double> &g = r.grad["w0"];
  double r0 = g[1] * 2, r1 = g[3] * 3;
  EXPECT_EQ(g[0], 0.0);
  EXPECT_NEAR(g[2], r0 / 2, 1e-6);
  EXPECT_NEAR(g[4], r1 / 3, 1e-6);
  EXPECT_NEAR(g[5], r1 / 3, 1e-6);
  // loss = 3 R0 + 2 R1, so the shares must add up to the same R.
  EXPECT_NEAR(r.loss, 3 * r0 + 2 * r1, 1e-6);
}

TEST_F(AutodiffGradCheck, BinaryMaxMinTiesSplitTheGradient) {
  // PyTorch's maximum/minimum: the larger (smaller) side gets the whole
  // gradient, a tie gives half to each. loss = sum(max(w0, w1) * R).
  for (const char *name : {"max", "min"}) {
    std::string body = weight("w0", {3}) + weight("w1", {3}) +
                       op("%y", name, {{"%w0", type({3})}, {"%w1", type({3})}},
                          type({3}), "");
    GradRun r;
    ASSERT_TRUE(run(withLoss(body, "%y", {3}),
                    {{"w0", {0, 0, 0, {1.0, 2.0, 5.0}}},
                     {"w1", {0, 0, 0, {1.0, 3.0, 4.0}}}},
                    r));
    const std::vector<double> &g0 = r.grad["w0"], &g1 = r.grad["w1"];
    // Element 0 ties: equal halves. Elements 1 and 2: one side only.
    EXPECT_NEAR(g0[0], g1[0], 1e-9) << name;
    bool isMax = std::string(name) == "max";
    EXPECT_EQ(isMax ? g0[1] : g1[1], 0.0) << name;
    EXPECT_EQ(isMax ? g1[2] : g0[2], 0.0) << name;
    // The halves add up to the whole R0: the other element of each pair
    // got all of R1 / R2, so R0 = g0[0] + g1[0] and the loss checks it.
    double r0 = g0[0] + g1[0], r1 = isMax ? g1[1] : g0[1],
           r2 = isMax ? g0[2] : g1[2];
    double y0 = 1.0, y1 = isMax ? 3.0 : 2.0, y2 = isMax ? 5.0 : 4.0;
    EXPECT_NEAR(r.loss, y0 * r0 + y1 * r1 + y2 * r2, 1e-6) << name;
  }
}

TEST_F(AutodiffGradCheck, SoftmaxLogSoftmax) {
  for (const char *name : {"softmax", "log_softmax"})
    for (int64_t axis : {0, 1, 2}) {
      std::string body =
          weight("w0", {2, 3, 4}) +
          op("%y", name, {{"%w0", type({2, 3, 4})}}, type({2, 3, 4}),
             "axis = " + std::to_string(axis) + " : i64");
      SCOPED_TRACE(body);
      EXPECT_TRUE(check(body, "%y", {2, 3, 4}, {{"w0", {-2.0, 2.0}}}));
    }
}

TEST_F(AutodiffGradCheck, LayerNorm) {
  // x, scale and bias all trainable; over the last dim, the last two and all.
  for (int64_t axis : {2, 1, 0})
    for (bool bias : {true, false}) {
      Dims x{2, 3, 4}, s(x.begin() + axis, x.end());
      std::string body = weight("x", x) + weight("scale", s);
      std::vector<Operand> operands{{"%x", type(x)}, {"%scale", type(s)}};
      if (bias) {
        body += weight("bias", s);
        operands.push_back({"%bias", type(s)});
      }
      body += op("%y", "layer_norm", operands, type(x),
                 "axis = " + std::to_string(axis) +
                     " : i64, epsilon = 1.0e-05 : f64");
      SCOPED_TRACE(body);
      EXPECT_TRUE(
          check(body, "%y", x, {{"x", {-2.0, 2.0}}, {"scale", {0.5, 1.5}}}));
    }
}

TEST_F(AutodiffGradCheck, LayerNormScaleAndBiasOnly) {
  // x is a constant: only scale and bias need gradients.
  Dims x{3, 4}, s{4};
  std::vector<double> xs;
  for (int i = 0; i < 12; ++i)
    xs.push_back(std::sin(1.7 * i));
  std::string body =
      f64Constant("%x", x, xs) + weight("scale", s) + weight("bias", s) +
      op("%y", "layer_norm",
         {{"%x", type(x)}, {"%scale", type(s)}, {"%bias", type(s)}}, type(x),
         "axis = 1 : i64, epsilon = 1.0e-05 : f64");
  EXPECT_TRUE(check(body, "%y", x));
}

//===----------------------------------------------------------------------===//
// gather
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, GatherRepeatedAndNegativeIndices) {
  // Embedding rows: row 1 is read twice, -1 is row 4 (read twice), row 2 never.
  std::string rows =
      weight("w0", {5, 3}) + i64Constant("%i", {2, 3}, {1, -1, 1, 3, 0, -1}) +
      op("%y", "gather", {{"%w0", type({5, 3})}, {"%i", type({2, 3}, "i64")}},
         type({2, 3, 3}), "axis = 0 : i64");
  EXPECT_TRUE(check(rows, "%y", {2, 3, 3}));
  // Along axis 1.
  std::string cols =
      weight("w0", {3, 5}) + i64Constant("%i", {4}, {4, -5, 2, 4}) +
      op("%y", "gather", {{"%w0", type({3, 5})}, {"%i", type({4}, "i64")}},
         type({3, 4}), "axis = 1 : i64");
  EXPECT_TRUE(check(cols, "%y", {3, 4}));
  // i32 indices.
  std::string i32 =
      weight("w0", {4, 3}) + i64Constant("%i", {3}, {3, -4, 3}, "i32") +
      op("%y", "gather", {{"%w0", type({4, 3})}, {"%i", type({3}, "i32")}},
         type({3, 3}), "axis = 0 : i64");
  EXPECT_TRUE(check(i32, "%y", {3, 3}));
  // A rank-0 index drops the axis.
  std::string scalar =
      weight("w0", {5, 3}) + i64Constant("%i", {}, {-2}) +
      op("%y", "gather", {{"%w0", type({5, 3})}, {"%i", type({}, "i64")}},
         type({3}), "axis = 0 : i64");
  EXPECT_TRUE(check(scalar, "%y", {3}));
}

TEST_F(AutodiffGradCheck, GatherPaddingIdx) {
  // nn.Embedding(padding_idx=p): row p gets exactly zero gradient although
  // the forward reads it; the other rows match the finite difference.
  for (int64_t padding : {1, -2}) {
    int64_t row = padding < 0 ? 5 + padding : padding;
    std::string body =
        weight("w0", {5, 3},
               "{padding_idx = " + std::to_string(padding) +
                   " : i64, trainable}") +
        i64Constant("%i", {5}, {1, 3, -2, 1, 0}) +
        op("%y", "gather", {{"%w0", type({5, 3})}, {"%i", type({5}, "i64")}},
           type({5, 3}), "axis = 0 : i64");
    SCOPED_TRACE(body);
    GradRun r;
    ASSERT_TRUE(run(withLoss(body, "%y", {5, 3}), {}, r));
    std::vector<int64_t> padElems{row * 3, row * 3 + 1, row * 3 + 2};
    EXPECT_TRUE(gradsMatch(r, {}, {{"w0", padElems}}));
    ASSERT_EQ(r.grad.count("w0"), 1u);
    for (int64_t e : padElems) {
      EXPECT_EQ(r.grad["w0"][e], 0.0) << "element " << e;
      EXPECT_NE(r.fd["w0"][e], 0.0) << "the forward reads row " << row;
    }
  }
}

TEST_F(AutodiffGradCheck, GatherPaddingIdxOnATiedWeight) {
  // A tied embedding / LM head with padding_idx = 1: only the embedding's
  // contribution to row 1 is dropped (nn.Embedding(padding_idx)); the LM
  // head's still arrives. Expected row 1: the finite difference of the same
  // model with the gather reading a frozen copy of the weight.
  auto model = [](const std::string &embedding) {
    return withLoss(
        embedding + "  %w0b = colossal.weight \"w0\" {trainable} : " +
            type({4, 3}) + "\n" + i64Constant("%i", {3}, {1, 2, 1}) +
            op("%h", "gather", {{"%e", type({4, 3})}, {"%i", type({3}, "i64")}},
               type({3, 3}), "axis = 0 : i64") +
            op("%y", "matmul", {{"%h", type({3, 3})}, {"%w0b", type({4, 3})}},
               type({3, 4}), "transpose_b = 1 : i64"),
        "%y", {3, 4});
  };
  std::vector<double> values;
  for (int i = 0; i < 12; ++i)
    values.push_back(std::cos(0.9 * i + 0.3));
  const Init fixed{0, 0, 0, values};
  GradRun tied, frozen;
  ASSERT_TRUE(run(model("  %e = colossal.weight \"w0\" {padding_idx = 1 : "
                        "i64, trainable} : " +
                        type({4, 3}) + "\n"),
                  {{"w0", fixed}}, tied));
  ASSERT_TRUE(
      run(model("  %e = colossal.weight \"frozen\" : " + type({4, 3}) + "\n"),
          {{"w0", fixed}, {"frozen", fixed}}, frozen));
  // Rows 0, 2, 3 against the tied model, row 1 against the frozen one.
  EXPECT_TRUE(gradsMatch(tied, {}, {{"w0", {3, 4, 5}}}));
  GradRun &rowOne = frozen;
  rowOne.grad["w0"] = tied.grad["w0"];
  EXPECT_TRUE(gradsMatch(rowOne, {}, {{"w0", {0, 1, 2, 6, 7, 8, 9, 10, 11}}}));
  // And the two differ there: the embedding does read row 1.
  EXPECT_GT(std::fabs(tied.fd["w0"][3] - frozen.fd["w0"][3]), 1e-3);
}

//===----------------------------------------------------------------------===//
// softmax_cross_entropy
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, SoftmaxCrossEntropy) {
  // Scores [4, 5] with label 3 ignored (-100), and [2, 4, 3] (a sequence
  // dim) with class 1 as ignore_index; every reduction, under the R loss.
  struct Case {
    Dims scores, labels;
    std::vector<int64_t> labelValues;
    int64_t ignore;
  };
  const Case cases[] = {
      {{4, 5}, {4}, {2, 0, -100, 4}, -100},
      {{2, 4, 3}, {2, 3}, {0, 1, 3, 2, 1, 1}, 1},
  };
  for (const Case &c : cases)
    for (int reduction : {0, 1, 2}) {
      Dims out = reduction == 0 ? c.labels : Dims{};
      std::string body =
          weight("w0", c.scores) + i64Constant("%l", c.labels, c.labelValues) +
          op("%y", "softmax_cross_entropy",
             {{"%w0", type(c.scores)}, {"%l", type(c.labels, "i64")}},
             type(out),
             "ignore_index = " + std::to_string(c.ignore) +
                 " : i64, reduction = " + std::to_string(reduction) + " : i64");
      SCOPED_TRACE(body);
      EXPECT_TRUE(check(body, "%y", out, {{"w0", {-2.0, 2.0}}}));
    }
}

//===----------------------------------------------------------------------===//
// Whole-function properties
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, TiedWeightSumsBothUses) {
  // One value used twice: y = w w^T.
  std::string twice =
      weight("w0", {3, 2}) + op("%y", "matmul",
                                {{"%w0", type({3, 2})}, {"%w0", type({3, 2})}},
                                type({3, 3}), "transpose_b = 1 : i64");
  EXPECT_TRUE(check(twice, "%y", {3, 3}));
  // Two weight ops of one name (a tied embedding and LM head): one grad state.
  std::string tied =
      weight("w0", {4, 3}) +
      "  %w0b = colossal.weight \"w0\" {trainable} : " + type({4, 3}) + "\n" +
      i64Constant("%i", {2}, {3, 1}) +
      op("%h", "gather", {{"%w0", type({4, 3})}, {"%i", type({2}, "i64")}},
         type({2, 3}), "axis = 0 : i64") +
      op("%y", "matmul", {{"%h", type({2, 3})}, {"%w0b", type({4, 3})}},
         type({2, 4}), "transpose_b = 1 : i64");
  GradRun r;
  ASSERT_TRUE(run(withLoss(tied, "%y", {2, 4}), {}, r));
  EXPECT_TRUE(gradsMatch(r));
  int states = 0, assigns = 0;
  lookup(*r.micro, rt::kMicroStepProgram).walk([&](Operation *o) {
    if (auto s = dyn_cast<graph::StateOp>(o))
      states += s.getName() == "grad.w0";
    if (auto a = dyn_cast<graph::AssignOp>(o))
      assigns += a.getName() == "grad.w0";
  });
  EXPECT_EQ(states, 1) << r.microText;
  EXPECT_EQ(assigns, 1) << r.microText;
}

TEST_F(AutodiffGradCheck, UnreachedWeightGetsNoGradient) {
  // w1 only feeds a mask, w2 only a second output that micro_step drops:
  // neither gets a grad state, and w1 (still used) loses `trainable`.
  std::string text = R"mlir(
func.func @main() -> (tensor<f64> {colossal.name = "loss"}, tensor<3xf64> {colossal.name = "logits"}) {
  %w0 = colossal.weight "w0" {trainable} : tensor<3xf64>
  %w1 = colossal.weight "w1" {trainable} : tensor<3xf64>
  %w2 = colossal.weight "w2" {trainable} : tensor<3xf64>
  %zero = colossal.constant dense<0.0> : tensor<f64>
  %m = colossal.greater %w1, %zero : (tensor<3xf64>, tensor<f64>) -> tensor<3xi1>
  %e = colossal.exp %w0 : (tensor<3xf64>) -> tensor<3xf64>
  %s = colossal.where %m, %e, %w0 : (tensor<3xi1>, tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64>
  %loss = colossal.reduce_sum %s {axes = array<i64: 0>, keepdims = 0 : i64} : (tensor<3xf64>) -> tensor<f64>
  %logits = colossal.mul %w2, %w0 : (tensor<3xf64>, tensor<3xf64>) -> tensor<3xf64>
  return %loss, %logits : tensor<f64>, tensor<3xf64>
}
)mlir";
  GradRun r;
  ASSERT_TRUE(
      run(text, {{"w0", kAnywhere}, {"w1", {0, 0, 0, {0.5, -0.5, 0.25}}}}, r));
  EXPECT_EQ(r.grad.count("w0"), 1u);
  EXPECT_EQ(r.grad.count("w1"), 0u) << r.microText;
  EXPECT_EQ(r.grad.count("w2"), 0u) << r.microText;
  // Compare w0 only (w1 and w2 have a zero finite difference and no state).
  r.fd.erase("w1");
  r.fd.erase("w2");
  EXPECT_TRUE(gradsMatch(r));
  bool sawW1 = false;
  lookup(*r.micro, rt::kMicroStepProgram).walk([&](graph::WeightOp w) {
    if (w.getName() == "w1") {
      sawW1 = true;
      EXPECT_FALSE(w.getTrainable()) << r.microText;
    }
    if (w.getName() == "w0") {
      EXPECT_TRUE(w.getTrainable());
    }
  });
  EXPECT_TRUE(sawW1) << "w1 still feeds the mask:\n" << r.microText;
  for (const char *name : {"w1", "w2"}) {
    std::string want =
        std::string("weight '") + name + "' does not reach the loss";
    EXPECT_TRUE(llvm::any_of(r.diagnostics, [&](const std::string &d) {
      return d.find(want) != std::string::npos;
    })) << want;
  }
}

TEST_F(AutodiffGradCheck, MaskAndIntegerPathsAreNotDifferentiated) {
  // y = where(w0 > 0.1, w0 * w1, -w1): the comparison feeding the mask is
  // not differentiated, only the selected branches are. The gather indices
  // come from cast(w2) to i64: an integer path, so w2 gets no gradient.
  std::string text = R"mlir(
func.func @main() -> (tensor<f64> {colossal.name = "loss"}) {
  %w0 = colossal.weight "w0" {trainable} : tensor<2x3xf64>
  %w1 = colossal.weight "w1" {trainable} : tensor<3xf64>
  %w2 = colossal.weight "w2" {trainable} : tensor<2xf64>
  %t = colossal.constant dense<1.0e-01> : tensor<f64>
  %m = colossal.greater %w0, %t : (tensor<2x3xf64>, tensor<f64>) -> tensor<2x3xi1>
  %p = colossal.mul %w0, %w1 : (tensor<2x3xf64>, tensor<3xf64>) -> tensor<2x3xf64>
  %n = colossal.neg %w1 : (tensor<3xf64>) -> tensor<3xf64>
  %s = colossal.where %m, %p, %n : (tensor<2x3xi1>, tensor<2x3xf64>, tensor<3xf64>) -> tensor<2x3xf64>
  %idx = colossal.cast %w2 : (tensor<2xf64>) -> tensor<2xi64>
  %g = colossal.gather %s, %idx {axis = 1 : i64} : (tensor<2x3xf64>, tensor<2xi64>) -> tensor<2x2xf64>
  %sq = colossal.mul %g, %g : (tensor<2x2xf64>, tensor<2x2xf64>) -> tensor<2x2xf64>
  %loss = colossal.reduce_sum %sq {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<2x2xf64>) -> tensor<f64>
  return %loss : tensor<f64>
}
)mlir";
  GradRun r;
  // w0 stays >= 0.3 away from the 0.1 threshold; w2 = [2.4, 0.6] reads
  // columns 2 and 0, and +-h does not move the truncation.
  ASSERT_TRUE(run(text,
                  {{"w0", {0, 0, 0, {0.9, -0.5, 1.3, -1.2, 0.6, -0.2}}},
                   {"w2", {0, 0, 0, {2.4, 0.6}}}},
                  r));
  EXPECT_EQ(r.grad.count("w2"), 0u) << r.microText;
  r.fd.erase("w2");
  EXPECT_TRUE(gradsMatch(r));
  // Column 1 is never gathered: its gradient is exactly zero.
  EXPECT_EQ(r.grad["w0"][1], 0.0);
  EXPECT_EQ(r.grad["w0"][4], 0.0);
}

TEST_F(AutodiffGradCheck, MeanCrossEntropySeedsWithTheCount) {
  // loss = mean CE over the labels != ignore_index (a function input here):
  // micro_step returns count = 4 scored labels of 6 and accumulates
  // count x dL/dw, so that micro-batches of different sizes weigh exactly.
  std::string text = R"mlir(
func.func @main(%labels: tensor<6xi64> {colossal.name = "labels"}) -> (tensor<f64> {colossal.name = "loss"}) {
  %x = colossal.constant dense<[[0.5, -1.0, 0.25], [1.5, 0.0, -0.5], [-0.75, 0.5, 1.0], [0.2, 0.3, -1.2], [1.1, -0.4, 0.6], [-0.3, 0.9, 0.1]]> : tensor<6x3xf64>
  %w = colossal.weight "w" {trainable} : tensor<4x3xf64>
  %b = colossal.weight "b" {trainable} : tensor<4xf64>
  %s = colossal.matmul %x, %w {transpose_b = 1 : i64} : (tensor<6x3xf64>, tensor<4x3xf64>) -> tensor<6x4xf64>
  %z = colossal.add %s, %b : (tensor<6x4xf64>, tensor<4xf64>) -> tensor<6x4xf64>
  %loss = colossal.softmax_cross_entropy %z, %labels {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<6x4xf64>, tensor<6xi64>) -> tensor<f64>
  return %loss : tensor<f64>
}
)mlir";
  rt::HostTensor labels(rt::TensorType{rt::DType::kI64, {6}});
  const int64_t values[] = {2, -100, 0, 3, -100, 1};
  for (int i = 0; i < 6; ++i)
    labels.as<int64_t>()[i] = values[i];
  GradRun r;
  ASSERT_TRUE(run(text, {}, r, {}, {labels}));
  EXPECT_EQ(r.count, 4.0);
  EXPECT_TRUE(gradsMatch(r)); // compares with count x finite difference
  // And explicitly: the state is 4 x dL/dw, not dL/dw.
  ASSERT_EQ(r.grad.count("b"), 1u);
  EXPECT_NEAR(r.grad["b"][0], 4.0 * r.fd["b"][0],
              1e-6 * std::fabs(4.0 * r.fd["b"][0]) + 1e-8);
  EXPECT_GT(std::fabs(r.fd["b"][0]), 1e-3);
  // The state is f32 whatever the weight's type, and a second micro_step
  // adds to it (gradient accumulation over micro-batches).
  EXPECT_EQ(r.after["grad.w"].type.dtype, rt::DType::kF32);
  std::string error;
  Store again = r.after;
  ASSERT_TRUE(interpret(lookup(*r.micro, rt::kMicroStepProgram), again,
                        {labels}, error))
      << error;
  std::vector<double> twice = toDoubles(again["grad.w"]);
  for (size_t i = 0; i < twice.size(); ++i)
    EXPECT_NEAR(twice[i], 2 * r.grad["w"][i], 1e-6 * std::fabs(twice[i]));
}

TEST_F(AutodiffGradCheck, MeanCrossEntropyCountWithSequenceDims) {
  // Scores [2, 4, 3], i32 labels [2, 3], ignore_index 2 (a real class
  // id): count = 6 - 2 = 4.
  std::string body =
      weight("w0", {2, 4, 3}) +
      i64Constant("%l", {2, 3}, {0, 2, 3, 2, 1, 1}, "i32") +
      op("%loss", "softmax_cross_entropy",
         {{"%w0", type({2, 4, 3})}, {"%l", type({2, 3}, "i32")}}, "tensor<f64>",
         "ignore_index = 2 : i64, reduction = 2 : i64");
  std::string text =
      "func.func @main() -> (tensor<f64> {colossal.name = \"loss\"}) {\n" +
      body + "  return %loss : tensor<f64>\n}\n";
  GradRun r;
  ASSERT_TRUE(run(text, {{"w0", {-2.0, 2.0}}}, r));
  EXPECT_EQ(r.count, 4.0);
  EXPECT_TRUE(gradsMatch(r));
}

TEST_F(AutodiffGradCheck, MeanCrossEntropyAllIgnored) {
  // Every label ignored: the loss is 0/0 = NaN (as PyTorch) but count = 0
  // and the accumulated gradient is exactly zero, not NaN.
  std::string text = R"mlir(
func.func @main() -> (tensor<f64> {colossal.name = "loss"}) {
  %w = colossal.weight "w" {trainable} : tensor<3x4xf64>
  %l = colossal.constant dense<[-100, -100, -100]> : tensor<3xi64>
  %loss = colossal.softmax_cross_entropy %w, %l {ignore_index = -100 : i64, reduction = 2 : i64} : (tensor<3x4xf64>, tensor<3xi64>) -> tensor<f64>
  return %loss : tensor<f64>
}
)mlir";
  OwningOpRef<ModuleOp> m = parse(text);
  ASSERT_TRUE(m);
  GradRun r;
  ASSERT_TRUE(succeeded(differentiate(*m, r)));
  Store store;
  store["w"] = rt::HostTensor(rt::TensorType{rt::DType::kF64, {3, 4}});
  for (int i = 0; i < 12; ++i)
    store["w"].as<double>()[i] = 0.1 * i;
  std::string error;
  auto results =
      interpret(lookup(*r.micro, rt::kMicroStepProgram), store, {}, error);
  ASSERT_TRUE(results) << error;
  EXPECT_TRUE(std::isnan(rt::loadAsDouble((*results)[0].ref(), 0)));
  EXPECT_EQ(rt::loadAsDouble((*results)[1].ref(), 0), 0.0);
  ASSERT_EQ(store.count("grad.w"), 1u);
  for (double g : toDoubles(store["grad.w"]))
    EXPECT_EQ(g, 0.0);
}

TEST_F(AutodiffGradCheck, SumCrossEntropyCountsOne) {
  // reduction = sum is not a mean: count 1, grad = dL/dw.
  std::string body =
      weight("w0", {3, 4}) + i64Constant("%l", {3}, {1, -100, 3}) +
      op("%loss", "softmax_cross_entropy",
         {{"%w0", type({3, 4})}, {"%l", type({3}, "i64")}}, "tensor<f64>",
         "ignore_index = -100 : i64, reduction = 1 : i64");
  std::string text =
      "func.func @main() -> (tensor<f64> {colossal.name = \"loss\"}) {\n" +
      body + "  return %loss : tensor<f64>\n}\n";
  GradRun r;
  ASSERT_TRUE(run(text, {}, r));
  EXPECT_EQ(r.count, 1.0);
  EXPECT_TRUE(gradsMatch(r));
}

//===----------------------------------------------------------------------===//
// No gradient rule
//===----------------------------------------------------------------------===//

TEST_F(AutodiffGradCheck, OpWithoutGradientRuleFails) {
  const std::pair<std::string, std::string> cases[] = {
      {weight("w0", {3, 4}) + i64Constant("%i", {2, 1}, {2, 0}) +
           op("%y", "gather_nd",
              {{"%w0", type({3, 4})}, {"%i", type({2, 1}, "i64")}},
              type({2, 4}), "batch_dims = 0 : i64"),
       "'colossal.gather_nd' op has no gradient rule"},
      {weight("w0", {2, 3}) + op("%y", "pad", {{"%w0", type({2, 3})}},
                                 type({2, 5}),
                                 "pads = array<i64: 0, 1, 0, 1>, mode = 1 : "
                                 "i64, value = 0.0 : f64"),
       "'colossal.pad' op the gradient of reflect/edge padding is not "
       "supported"},
  };
  for (const auto &[body, want] : cases) {
    SCOPED_TRACE(body);
    Dims out =
        want.find("gather_nd") != std::string::npos ? Dims{2, 4} : Dims{2, 5};
    OwningOpRef<ModuleOp> m = parse(withLoss(body, "%y", out));
    ASSERT_TRUE(m);
    GradRun r;
    EXPECT_TRUE(failed(differentiate(*m, r)));
    EXPECT_FALSE(r.micro);
    bool found = llvm::any_of(r.diagnostics, [&](const std::string &d) {
      return d.rfind("error: ", 0) == 0 && d.find(want) != std::string::npos;
    });
    std::string all;
    for (auto &d : r.diagnostics)
      all += d + "\n";
    EXPECT_TRUE(found) << "want an error containing \"" << want << "\", got:\n"
                       << all;
  }
}

TEST_F(AutodiffGradCheck, OpWithoutGradientRuleOffTheLossPathIsFine) {
  // gather_nd reads the trainable weight but only feeds the logits output,
  // which micro_step drops: no gradient through it is needed.
  std::string text = R"mlir(
func.func @main() -> (tensor<f64> {colossal.name = "loss"}, tensor<2x4xf64> {colossal.name = "logits"}) {
  %w = colossal.weight "w" {trainable} : tensor<3x4xf64>
  %i = colossal.constant dense<[[2], [0]]> : tensor<2x1xi64>
  %g = colossal.gather_nd %w, %i {batch_dims = 0 : i64} : (tensor<3x4xf64>, tensor<2x1xi64>) -> tensor<2x4xf64>
  %e = colossal.exp %w : (tensor<3x4xf64>) -> tensor<3x4xf64>
  %loss = colossal.reduce_sum %e {axes = array<i64: 0, 1>, keepdims = 0 : i64} : (tensor<3x4xf64>) -> tensor<f64>
  return %loss, %g : tensor<f64>, tensor<2x4xf64>
}
)mlir";
  GradRun r;
  ASSERT_TRUE(run(text, {}, r));
  EXPECT_TRUE(gradsMatch(r));
}

} // namespace
