// The Python binding: arrays to pointers, extents and strides; the GIL released around
// kernels; one switch per dtype. Validation lives in Python (zmfast/_validate.py).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <stdexcept>
#include <vector>

#include "channels.hpp"
#include "moments.hpp"
#include "normalize.hpp"

namespace py = pybind11;
using Ints = std::vector<int64_t>;

namespace {

std::atomic<int> g_threads{1};

zm::Space make_space(const Ints& extent, std::initializer_list<const Ints*> strides) {
  zm::Space s;
  if (extent.size() > size_t(zm::kMaxDims)) throw std::invalid_argument("too many dimensions");
  s.nd = int(extent.size());
  int a = 0;
  for (const Ints* st : strides) {
    if (st->size() != extent.size()) throw std::invalid_argument("strides do not match extents");
    for (int i = 0; i < s.nd; ++i) s.stride[a][i] = (*st)[size_t(i)];
    ++a;
  }
  for (; a < zm::kMaxArrays; ++a)
    for (int i = 0; i < s.nd; ++i) s.stride[a][i] = 0;
  for (int i = 0; i < s.nd; ++i) s.extent[i] = extent[size_t(i)];
  return s;
}

template <class T>
void run_moments(const char* base, const zm::Space& kept, const zm::Space& red, double* mean,
                 double* m2, int threads, const zm::Spread& spread) {
  if (m2)
    zm::reduce_moments<T, true>(base, kept, red, mean, m2, threads, spread);
  else
    zm::reduce_moments<T, false>(base, kept, red, mean, nullptr, threads);
}

void moments(const py::array& x, int64_t offset, const Ints& kept_extent,
             const Ints& kept_strides, const Ints& out_strides, const Ints& red_extent,
             const Ints& red_strides, py::array_t<double> mean_out, py::object m2_out,
             double spread_divisor, bool spread_root) {
  const zm::Space kept = make_space(kept_extent, {&kept_strides, &out_strides});
  const zm::Space red = make_space(red_extent, {&red_strides});
  const char* base = static_cast<const char*>(x.data()) + offset;
  double* mean = mean_out.mutable_data();
  double* m2 = nullptr;
  zm::Spread spread;
  if (!m2_out.is_none()) {
    auto m2_array = py::cast<py::array_t<double>>(m2_out);
    m2 = m2_array.mutable_data();
    if (spread_divisor != 0) {  // finished over the whole array: it must be just the outputs
      if (!(m2_array.flags() & py::array::c_style) || int64_t(m2_array.size()) != kept.size())
        throw std::invalid_argument("moments: a spread needs m2_out of exactly the outputs");
      spread.divisor = spread_divisor, spread.root = spread_root;
    }
  }
  const int threads = g_threads.load();
  const char type = x.dtype().char_();
  py::gil_scoped_release release;
  switch (type) {
    case 'B': return run_moments<uint8_t>(base, kept, red, mean, m2, threads, spread);
    case 'b': return run_moments<int8_t>(base, kept, red, mean, m2, threads, spread);
    case 'H': return run_moments<uint16_t>(base, kept, red, mean, m2, threads, spread);
    case 'h': return run_moments<int16_t>(base, kept, red, mean, m2, threads, spread);
    case 'f': return run_moments<float>(base, kept, red, mean, m2, threads, spread);
    case 'd': return run_moments<double>(base, kept, red, mean, m2, threads, spread);
  }
  throw py::type_error("moments: unsupported input dtype");
}

// S1 += column sums, S2 += column sums of squares of C-contiguous (rows, lanes) integers.
void add_rows(char type, const void* p, int64_t rows, int64_t lanes, int64_t* s1, int64_t* s2,
              int threads) {
  switch (type) {
    case 'B': return zm::add_column_sums(static_cast<const uint8_t*>(p), rows, lanes, s1, s2, threads);
    case 'b': return zm::add_column_sums(static_cast<const int8_t*>(p), rows, lanes, s1, s2, threads);
    case 'H': return zm::add_column_sums(static_cast<const uint16_t*>(p), rows, lanes, s1, s2, threads);
    case 'h': return zm::add_column_sums(static_cast<const int16_t*>(p), rows, lanes, s1, s2, threads);
  }
}

bool is_sums_type(char type) { return type == 'B' || type == 'b' || type == 'H' || type == 'h'; }

void add_sums(const py::array& x, int64_t rows, int64_t lanes,
              py::array_t<int64_t, 0> s1, py::array_t<int64_t, 0> s2) {
  if (!(x.flags() & py::array::c_style) || int64_t(x.size()) != rows * lanes || rows < 0)
    throw std::invalid_argument("add_sums: x must be C-contiguous with rows * lanes elements");
  if (!(s1.flags() & py::array::c_style) || !(s2.flags() & py::array::c_style) ||
      int64_t(s1.size()) != lanes || int64_t(s2.size()) != lanes)
    throw std::invalid_argument("add_sums: s1 and s2 must be contiguous int64 of lanes values");
  const void* p = x.data();
  int64_t* a = s1.mutable_data();
  int64_t* b = s2.mutable_data();
  const int threads = g_threads.load();
  const char type = x.dtype().char_();
  if (!is_sums_type(type))
    throw py::type_error("add_sums: x must be an 8- or 16-bit integer array");
  py::gil_scoped_release release;
  add_rows(type, p, rows, lanes, a, b, threads);
}

// S1[c] += the sums and S2[c] += the sums of squares of channel c of C-contiguous uint8 x
// read as pixels of `features` channels, where the linear per-channel kernel applies (one or
// three channels with AVX512-VNNI, three at AVX2); returns false, adding nothing, elsewhere.
bool add_channel_sums(const py::array& x, int64_t features, py::array_t<int64_t, 0> s1,
                      py::array_t<int64_t, 0> s2) {
  if (!(x.flags() & py::array::c_style) || features < 1 || x.size() % features != 0)
    throw std::invalid_argument("add_channel_sums: x must be C-contiguous whole pixels");
  if (!(s1.flags() & py::array::c_style) || !(s2.flags() & py::array::c_style) ||
      int64_t(s1.size()) < features || int64_t(s2.size()) < features)
    throw std::invalid_argument("add_channel_sums: s1 and s2 must be contiguous int64 of at "
                                "least `features` values");
  if (x.dtype().char_() != 'B') return false;
  const auto* p = static_cast<const uint8_t*>(x.data());
  int64_t* a = s1.mutable_data();
  int64_t* b = s2.mutable_data();
  const int threads = g_threads.load();
  py::gil_scoped_release release;
  return zm::add_channel_sums(p, int64_t(x.size()), int(features), a, b, threads);
}

// RunningSums.moments of the cpp backend: mean and M2 from exact int64 sums over lanes.
py::tuple moments_from_sums(int64_t n, const py::array_t<int64_t, 0>& s1,
                            const py::array_t<int64_t, 0>& s2, int64_t features) {
  const int64_t lanes = int64_t(s1.size());
  if (n < 1 || features < 1 || lanes % features != 0 || int64_t(s2.size()) != lanes ||
      !(s1.flags() & py::array::c_style) || !(s2.flags() & py::array::c_style))
    throw std::invalid_argument("moments_from_sums: s1 and s2 must be contiguous int64 of the "
                                "same whole number of statistics' periods, n positive");
  py::array_t<double> mean(features), m2(features);
  double* mp = mean.mutable_data();
  double* m2p = m2.mutable_data();
  const int64_t* a = s1.data();
  const int64_t* b = s2.data();
  const int threads = g_threads.load();
  {
    py::gil_scoped_release release;
    zm::moments_from_sums(n, a, b, lanes, features, mp, m2p, threads);
  }
  return py::make_tuple(mean, m2);
}

// Moments (mean, M2) of a C-contiguous 8/16-bit integer x over its leading axes, for
// `features` statistics, in one call: exact int64 sums over `lanes` (a multiple of
// features), folded, then the same integer shift and float64 steps as
// zmfast._stats.RunningSums.moments, so both give the same bits. The caller checks that
// x.size / features is within RunningSums' exactness limit. Without want_m2, M2 is None and
// the one- and three-channel kernel sums no squares.
py::tuple exact_moments(const py::array& x, int64_t features, int64_t lanes, bool want_m2) {
  const char type = x.dtype().char_();
  if (!is_sums_type(type)) throw py::type_error("exact_moments: x must be 8- or 16-bit integers");
  const int64_t size = int64_t(x.size());
  if (!(x.flags() & py::array::c_style) || features < 1 || lanes % features != 0 ||
      size % features != 0 || size == 0)
    throw std::invalid_argument("exact_moments: x must be C-contiguous whole rows of features");
  py::array_t<double> mean(features);
  py::object m2 = py::none();
  double* mp = mean.mutable_data();
  double* m2p = nullptr;
  if (want_m2) {
    py::array_t<double> spread(features);
    m2p = spread.mutable_data();
    m2 = std::move(spread);
  }
  const auto* p = static_cast<const char*>(x.data());
  const int threads = g_threads.load();
  {
    py::gil_scoped_release release;
    // One or three uint8 channels: each channel's sums read in one linear pass, into as many
    // sums as channels, not `lanes` of them to zero and fold (0.3 us a call for 192 lanes,
    // 2.8 us for 3,072).
    int64_t channel_s1[3] = {}, channel_s2[3] = {};
    if (type == 'B' && features <= 3 &&
        zm::add_channel_sums(reinterpret_cast<const uint8_t*>(p), size, int(features), channel_s1,
                             want_m2 ? channel_s2 : nullptr, threads)) {
      zm::moments_from_sums(size / features, channel_s1, channel_s2, features, features, mp, m2p,
                            1);
    } else {
      std::vector<int64_t> s1(size_t(lanes), 0), s2(size_t(lanes), 0);
      const int64_t rows = size / lanes, tail = size % lanes;
      if (rows) add_rows(type, p, rows, lanes, s1.data(), s2.data(), threads);
      if (tail)  // whole periods of the statistics: lane j still maps to j % features
        add_rows(type, p + rows * lanes * x.itemsize(), 1, tail, s1.data(), s2.data(), threads);
      zm::moments_from_sums(size / features, s1.data(), s2.data(), lanes, features, mp, m2p, 1);
    }
  }
  return py::make_tuple(mean, m2);
}

// The cpp backend's streaming accumulator behind zmfast._stats.RunningSums: the checks and
// the kernel of one StandardScaler.partial_fit batch in a single call, so that a stream of
// small batches pays one Python-to-C++ crossing each. The totals and the count live in
// NumPy arrays shared with Python.
class ColumnSums {
 public:
  ColumnSums(py::dtype dtype, int ndim, Ints kept, int64_t features, int64_t limit,
             py::array_t<int64_t, 0> s1, py::array_t<int64_t, 0> s2,
             py::array_t<int64_t, 0> count, py::array_t<int64_t, 0> samples)
      : dtype_(std::move(dtype)), ndim_(ndim), kept_(std::move(kept)), features_(features),
        limit_(limit), s1_(std::move(s1)), s2_(std::move(s2)), count_(std::move(count)),
        samples_(std::move(samples)) {
    lanes_ = int64_t(s1_.size());
    if (features_ < 1 || lanes_ % features_ != 0 || int64_t(s2_.size()) != lanes_ ||
        count_.size() != 1 || samples_.size() != 1 || !(s1_.flags() & py::array::c_style) ||
        !(s2_.flags() & py::array::c_style) || kept_.size() > size_t(ndim_))
      throw std::invalid_argument("ColumnSums: inconsistent arguments");
    if (!is_sums_type(dtype_.char_()) || !dtype_.attr("isnative").cast<bool>())
      throw py::type_error("ColumnSums: the dtype must be a native 8- or 16-bit integer");
  }

  // Adds x (and its length to the samples seen) and returns true when it is a plain ndarray
  // of the dtype, rank and statistics shape, C-contiguous, and keeps the totals exact;
  // otherwise adds nothing and returns false. An empty x is taken and adds nothing.
  bool add(py::handle x) {
    const auto& api = py::detail::npy_api::get();
    if (Py_TYPE(x.ptr()) != api.PyArray_Type_) return false;
    const auto a = py::reinterpret_borrow<py::array>(x);
    if (a.ndim() != ndim_ || !(a.flags() & py::array::c_style)) return false;
    if (!api.PyArray_EquivTypes_(a.dtype().ptr(), dtype_.ptr())) return false;
    const int lead = ndim_ - int(kept_.size());
    for (size_t i = 0; i < kept_.size(); ++i)
      if (a.shape(lead + int(i)) != kept_[i]) return false;
    const int64_t size = int64_t(a.size());
    if (size == 0) return true;
    int64_t* count = count_.mutable_data();
    if (count[0] + size / features_ > limit_) return false;
    const int64_t rows = size / lanes_, tail = size % lanes_;
    const char type = a.dtype().char_();
    const char* p = static_cast<const char*>(a.data());
    int64_t* s1 = s1_.mutable_data();
    int64_t* s2 = s2_.mutable_data();
    const int threads = g_threads.load();
    bool by_channel = false;  // one or three uint8 channels: each channel's sums in lane f
    if (type == 'B' && features_ <= 3) {
      py::gil_scoped_release release;
      by_channel = zm::add_channel_sums(reinterpret_cast<const uint8_t*>(p), size,
                                        int(features_), s1, s2, threads);
    }
    if (by_channel) {
      count[0] += size / features_;
      samples_.mutable_data()[0] += a.shape(0);
      return true;
    }
    // uint8 rows go to the pending 32-bit sums where the AVX-512 or AVX2 kernel allows,
    // sparing each small batch the int64 flush; anything else adds to the int64 totals.
    zm::PendingOrder order{};
    const bool to_pending = type == 'B' && tail == 0 && rows <= zm::kPendingRows &&
                            zm::pending_order(rows, lanes_, order);
    if (to_pending && (pending_rows_ + rows > zm::kPendingRows || order != pending_order_))
      flush();  // full, or kept in another kernel's lane order
    if (to_pending) {  // a set of pending sums for each thread that the batch's rows split into
      const size_t sets = size_t(zm::pending_sets_for(rows, lanes_, threads));
      pending_.resize(std::max(pending_.size(), sets * size_t((lanes_ + 63) / 64)));
    }
    bool pending = false;
    {
      py::gil_scoped_release release;
      if (to_pending)
        pending = zm::add_column_sums_pending(reinterpret_cast<const uint8_t*>(p), rows, lanes_,
                                              pending_.data(), threads, order);
      if (!pending) add_rows(type, p, rows, lanes_, s1, s2, threads);
      // The tail is a whole number of statistics' periods: lane j still maps to j % features.
      add_rows(type, p + rows * lanes_ * a.itemsize(), tail ? 1 : 0, tail, s1, s2, threads);
    }
    if (pending) pending_rows_ += rows, pending_order_ = order;
    count[0] += size / features_;
    samples_.mutable_data()[0] += a.shape(0);
    return true;
  }

  // Moves the pending sums into the int64 totals (before Python reads or clears them).
  void flush() {
    if (pending_rows_ == 0) return;
    const int sets = int(pending_.size() / size_t((lanes_ + 63) / 64));
    zm::flush_pending(pending_.data(), sets, lanes_, s1_.mutable_data(), s2_.mutable_data(),
                      pending_order_);
    pending_rows_ = 0;
  }

 private:
  py::dtype dtype_;
  int ndim_;
  Ints kept_;
  int64_t features_, limit_, lanes_ = 0;
  py::array_t<int64_t, 0> s1_, s2_, count_, samples_;
  std::vector<zm::PendingChunk> pending_;
  int64_t pending_rows_ = 0;
  zm::PendingOrder pending_order_ = zm::PendingOrder::avx512;  // the pending sums' lane order
};

template <class T>
void run_affine(const char* x, const double* mean, const double* inv, char* out, char out_type,
                const zm::Space& space, int threads, bool fresh, const zm::PixelForm* form) {
  switch (out_type) {
    case 'f': return zm::affine<T, float>(x, mean, inv, out, space, threads, fresh, form);
    case 'd': return zm::affine<T, double>(x, mean, inv, out, space, threads, fresh);
    case 'e': return zm::affine<T, zm::Half>(x, mean, inv, out, space, threads, fresh, form);
    case 'B': return zm::affine<T, uint8_t>(x, mean, inv, out, space, threads, fresh);
    case 'H': return zm::affine<T, uint16_t>(x, mean, inv, out, space, threads, fresh);
  }
}

void affine(const py::array& x, int64_t x_offset, const py::array& mean, const py::array& inv,
            const Ints& extent, const Ints& x_strides, const Ints& stats_strides,
            py::array& out, int64_t out_offset, const Ints& out_strides, bool fresh,
            const py::object& form) {
  const zm::Space space = make_space(extent, {&x_strides, &stats_strides, &out_strides});
  // The per-pixel float32 form, from pixel_form (for uint8 into float32 or float16).
  zm::PixelForm pixel{};
  const zm::PixelForm* form_ptr = nullptr;
  py::array_t<float, py::array::c_style> coef;
  py::array_t<uint8_t, py::array::c_style> state;
  if (!form.is_none()) {
    const auto parts = form.cast<py::tuple>();
    coef = parts[0].cast<py::array_t<float, py::array::c_style>>();
    state = parts[1].cast<py::array_t<uint8_t, py::array::c_style>>();
    const int64_t head = parts[2].cast<int64_t>();
    const int nd = space.nd;
    const int64_t run = nd ? space.extent[nd - 1] : 0;
    bool stats_fit = nd >= 1 && space.stride[1][nd - 1] == int64_t(sizeof(double));
    for (int i = 0; i + 1 < nd; ++i) stats_fit = stats_fit && space.stride[1][i] == 0;
    const int64_t groups = head >= 0 && head < run ? (run - head) / 16 : -1;
    if (!stats_fit || coef.ndim() != 3 || coef.shape(0) != groups ||
        coef.shape(1) != zm::kFormFloats ||
        coef.shape(2) != 16 || state.ndim() != 1 || state.shape(0) != groups ||
        x.dtype().char_() != 'B' || (out.dtype().char_() != 'f' && out.dtype().char_() != 'e'))
      throw py::value_error("affine: the pixel form does not match the statistics");
    pixel = {coef.data(), coef.data() + 64 * groups, state.data(), head};  // see pixel_form
    form_ptr = &pixel;
  }
  const char in_type = x.dtype().char_(), out_type = out.dtype().char_();
  if (mean.dtype().char_() != 'd' ||
      inv.dtype().char_() != 'd')
    throw py::type_error("affine: statistics must be float64");
  if (out_type != 'f' && out_type != 'd' && out_type != 'e' && out_type != 'B' && out_type != 'H')
    throw py::type_error("affine: unsupported output dtype");
  const char* xp = static_cast<const char*>(x.data()) + x_offset;
  const double* mp = static_cast<const double*>(mean.data());
  const double* ip = static_cast<const double*>(inv.data());
  char* op = static_cast<char*>(out.mutable_data()) + out_offset;
  const int threads = g_threads.load();
  py::gil_scoped_release release;
  switch (in_type) {
    case 'B': return run_affine<uint8_t>(xp, mp, ip, op, out_type, space, threads, fresh, form_ptr);
    case 'b': return run_affine<int8_t>(xp, mp, ip, op, out_type, space, threads, fresh, form_ptr);
    case 'H': return run_affine<uint16_t>(xp, mp, ip, op, out_type, space, threads, fresh, form_ptr);
    case 'h': return run_affine<int16_t>(xp, mp, ip, op, out_type, space, threads, fresh, form_ptr);
    case 'f': return run_affine<float>(xp, mp, ip, op, out_type, space, threads, fresh, form_ptr);
    case 'd': return run_affine<double>(xp, mp, ip, op, out_type, space, threads, fresh, form_ptr);
  }
  throw py::type_error("affine: unsupported input dtype");
}

// (4, C) float32 rows k, r, r_low, b of the channel form (channels.hpp), or None where this SIMD
// level has no channel kernels or a channel's 256 values miss the bound.
py::object channel_coefficients(py::array_t<double, py::array::c_style | py::array::forcecast> mean,
                                py::array_t<double, py::array::c_style | py::array::forcecast> inv,
                                bool half) {
  const int64_t channels = mean.size();
  if (mean.ndim() != 1 || inv.ndim() != 1 || inv.size() != channels)
    throw py::value_error("channel_coefficients: mean and inv must be 1-d of one length");
  if (!zm::channel_kernels_available(zm::current_level())) return py::none();
  zm::ChannelCoefficients cc;
  if (!zm::channel_coefficients(mean.data(), inv.data(), int(channels), half, cc))
    return py::none();
  py::array_t<float> out({int64_t(4), channels});
  auto rows = out.mutable_unchecked<2>();
  for (int64_t c = 0; c < channels; ++c) {
    rows(0, c) = cc.k[c];
    rows(1, c) = cc.r[c];
    rows(2, c) = cc.r_low[c];
    rows(3, c) = cc.b[c];
  }
  return std::move(out);
}

py::object pixel_form(py::array_t<double, py::array::c_style | py::array::forcecast> mean,
                      py::array_t<double, py::array::c_style | py::array::forcecast> inv,
                      bool half, int64_t head) {
  if (mean.ndim() != 1 || inv.ndim() != 1 || inv.size() != mean.size())
    throw py::value_error("pixel_form: mean and inv must be 1-d of one length");
  if (head < 0 || head >= mean.size())
    throw py::value_error("pixel_form: head must be in [0, len(mean))");
  const int64_t n = mean.size() - head;  // the columns the groups cover
  if (!zm::pixel_form_available(zm::current_level(), half)) return py::none();
  py::array_t<float> coef({n / 16, int64_t(zm::kFormFloats), int64_t(16)});
  py::array_t<uint8_t> state(n / 16);
  const double* mp = mean.data() + head;
  const double* ip = inv.data() + head;
  float* cp = coef.mutable_data();
  uint8_t* statep = state.mutable_data();
  const int threads = g_threads.load();
  {
    py::gil_scoped_release release;
    zm::pixel_form(mp, ip, n, half, cp, statep, threads);
  }
  return py::make_tuple(coef, state, head);
}

// A validated call of the channel kernels: the space (x strides as array 0, out's as arrays
// 1 and 2: the kernels read array 2, as in normalize.hpp), coefficients and layout.
struct ChannelCall {
  zm::Space space;
  zm::ChannelCoefficients cc;
  bool planar = false;
  char out_type = 'f';
};

ChannelCall channel_call(const py::array_t<float, py::array::c_style>& coefficients,
                         const Ints& extent, const Ints& x_strides, const Ints& out_strides,
                         bool planar, char out_type) {
  ChannelCall call;
  call.space = make_space(extent, {&x_strides, &out_strides, &out_strides});
  call.planar = planar;
  call.out_type = out_type;
  if (out_type != 'f' && out_type != 'e')
    throw py::type_error("affine_channels: out must be float32 or float16");
  if (coefficients.ndim() != 2 || coefficients.shape(0) != 4 || coefficients.shape(1) < 1 ||
      coefficients.shape(1) > zm::kMaxChannels)
    throw py::value_error("affine_channels: coefficients must have shape (4, C), C <= 4");
  zm::ChannelCoefficients& cc = call.cc;
  cc.channels = int(coefficients.shape(1));
  for (int c = 0; c < cc.channels; ++c) {
    cc.k[c] = coefficients.at(0, c);
    cc.r[c] = coefficients.at(1, c);
    cc.r_low[c] = coefficients.at(2, c);
    cc.b[c] = coefficients.at(3, c);
  }
  const zm::Space& space = call.space;
  const int nd = space.nd;
  const int64_t item = out_type == 'f' ? 4 : 2;
  const bool shape_ok =
      planar ? nd >= 2 && (cc.channels == 3 || cc.channels == 4) &&
                   space.extent[nd - 2] == cc.channels && space.stride[0][nd - 2] == 1 &&
                   space.stride[0][nd - 1] == cc.channels &&
                   space.stride[1][nd - 2] == space.extent[nd - 1] * item &&
                   space.stride[1][nd - 1] == item
             : nd >= 1 && space.extent[nd - 1] % cc.channels == 0 &&
                   space.stride[0][nd - 1] == 1 && space.stride[1][nd - 1] == item;
  if (!shape_ok) throw py::value_error("affine_channels: not an interleaved or planar space");
  return call;
}

// Runs with the GIL released; the caller checked the SIMD level.
void run_channel_call(const ChannelCall& call, const uint8_t* xp, char* op, bool fresh) {
  const int threads = g_threads.load();
  py::gil_scoped_release release;
  if (call.out_type == 'f')
    zm::affine_channels<float>(xp, reinterpret_cast<float*>(op), call.space, call.cc,
                               call.planar, threads, fresh);
  else
    zm::affine_channels<zm::Half>(xp, reinterpret_cast<zm::Half*>(op), call.space, call.cc,
                                  call.planar, threads, fresh);
}

void affine_channels(const py::array& x, int64_t x_offset,
                     py::array_t<float, py::array::c_style> coefficients, const Ints& extent,
                     const Ints& x_strides, py::array& out, int64_t out_offset,
                     const Ints& out_strides, bool planar, bool fresh) {
  const ChannelCall call =
      channel_call(coefficients, extent, x_strides, out_strides, planar, out.dtype().char_());
  if (x.dtype().char_() != 'B') throw py::type_error("affine_channels: x must be uint8");
  if (!zm::channel_kernels_available(zm::current_level()))
    throw py::value_error("affine_channels: no channel kernels at this SIMD level");
  run_channel_call(call, static_cast<const uint8_t*>(x.data()) + x_offset,
                   static_cast<char*>(out.mutable_data()) + out_offset, fresh);
}

// The [lo, hi) byte span of an array of `shape` and `strides` around its data pointer.
void byte_span(const py::array& a, int64_t& lo, int64_t& hi) {
  lo = 0;
  hi = a.itemsize();
  for (int i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 0) { lo = hi = 0; return; }
    const int64_t reach = (a.shape(i) - 1) * a.strides(i);
    (reach < 0 ? lo : hi) += reach;
  }
}

// A channel-kernel call planned once for arrays of one shape, strides and dtype, for a data
// loader's repeated calls (zmfast._normalize's repeat plans): run(x, out) checks that the
// arrays match the plan, that out is writable and does not overlap x, and that the SIMD level
// is the planned one, then runs; it returns False, writing nothing, where any of that fails.
class ChannelPlan {
 public:
  ChannelPlan(const py::array& x, const py::array& out,
              const py::array_t<float, py::array::c_style>& coefficients, const Ints& extent,
              const Ints& x_strides, const Ints& out_strides, bool planar, bool fresh)
      : call_(channel_call(coefficients, extent, x_strides, out_strides, planar,
                           out.dtype().char_())),
        fresh_(fresh), level_(zm::current_level()), x_(describe(x)), out_(describe(out)) {
    if (x.dtype().char_() != 'B') throw py::type_error("ChannelPlan: x must be uint8");
    if (!out.writeable()) throw py::value_error("ChannelPlan: out is read-only");
    if (!zm::channel_kernels_available(level_))
      throw py::value_error("ChannelPlan: no channel kernels at this SIMD level");
    // The space must lie within both arrays (its strides come from them).
    int64_t reach[2][2] = {{0, 0}, {0, 0}};  // [x, out][lowest, highest] byte offsets
    for (int i = 0; i < call_.space.nd; ++i)
      for (int a = 0; a < 2; ++a) {
        const int64_t step = (call_.space.extent[i] - 1) * call_.space.stride[a][i];
        reach[a][step > 0] += step;
      }
    if (call_.space.size() > 0 &&
        (reach[0][0] < x_.lo || reach[0][1] + 1 > x_.hi || reach[1][0] < out_.lo ||
         reach[1][1] + out.itemsize() > out_.hi))
      throw py::value_error("ChannelPlan: the space reaches outside x or out");
  }

  bool run(const py::array& x, py::array& out) const {
    if (zm::current_level() != level_ || !matches(x, x_) || !matches(out, out_) ||
        !out.writeable())
      return false;
    const auto* xp = static_cast<const char*>(x.data());
    char* op = static_cast<char*>(out.mutable_data());
    if (xp + x_.lo < op + out_.hi && op + out_.lo < xp + x_.hi) return false;  // overlap
    run_channel_call(call_, reinterpret_cast<const uint8_t*>(xp), op, fresh_);
    return true;
  }

 private:
  struct Layout {
    char type;
    Ints shape, strides;
    int64_t lo, hi;
  };
  static Layout describe(const py::array& a) {
    Layout layout{a.dtype().char_(), Ints(a.shape(), a.shape() + a.ndim()),
                  Ints(a.strides(), a.strides() + a.ndim()), 0, 0};
    byte_span(a, layout.lo, layout.hi);
    return layout;
  }
  static bool matches(const py::array& a, const Layout& layout) {
    if (a.dtype().char_() != layout.type || a.ndim() != py::ssize_t(layout.shape.size()))
      return false;
    for (size_t i = 0; i < layout.shape.size(); ++i)
      if (a.shape(py::ssize_t(i)) != layout.shape[i] || a.strides(py::ssize_t(i)) != layout.strides[i])
        return false;
    return true;
  }

  ChannelCall call_;
  bool fresh_;
  zm::Level level_;
  Layout x_, out_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "zmfast's C++ kernels; use the zmfast package, not this module.";
  m.def("moments", &moments, py::arg("x"), py::arg("offset"), py::arg("kept_extent"),
        py::arg("kept_strides"), py::arg("out_strides"), py::arg("red_extent"),
        py::arg("red_strides"), py::arg("mean_out"), py::arg("m2_out"),
        py::arg("spread_divisor") = 0.0, py::arg("spread_root") = false,
        "Moments (mean, M2) of a canonical strided reduction; with spread_divisor, m2_out "
        "receives M2 / spread_divisor (var), or its square root where spread_root (std).");
  m.def("add_sums", &add_sums,
        "S1 += x.sum(0) and S2 += (x * x).sum(0), exactly, for integer x of shape (rows, lanes).");
  m.def("add_channel_sums", &add_channel_sums, py::arg("x"), py::arg("features"),
        py::arg("s1"), py::arg("s2"),
        "S1[c], S2[c] += the sums (of squares) of channel c of uint8 pixels, in one linear "
        "pass where the CPU allows (returns whether it did).");
  m.def("exact_moments", &exact_moments, py::arg("x"), py::arg("features"), py::arg("lanes"),
        py::arg("want_m2") = true,
        "(mean, M2) of integer x over its leading axes from exact sums, in one call (M2 None "
        "without want_m2).");
  m.def("moments_from_sums", &moments_from_sums, py::arg("n"), py::arg("s1"), py::arg("s2"),
        py::arg("features"),
        "(mean, M2) of each statistic from exact int64 sums of n values over lanes (lane j "
        "holds statistic j % features), as zmfast._stats.RunningSums.moments computes them.");
  m.def(
      "finish_spread",
      [](py::array_t<double, 0> m2, double divisor, bool root) {
        if (!(m2.flags() & py::array::c_style) || !m2.writeable())
          throw std::invalid_argument("finish_spread: m2 must be writable C-contiguous float64");
        double* p = m2.mutable_data();
        const int64_t n = int64_t(m2.size());
        const int threads = g_threads.load();
        py::gil_scoped_release release;
        zm::finish_spread(p, n, divisor, root, threads);
      },
      py::arg("m2"), py::arg("divisor"), py::arg("root"),
      "In place: m2 / divisor (var), and its square root where root (std).");
  m.def(
      "all_finite",
      [](py::array_t<double, py::array::c_style> x) {
        const double* p = x.data();
        const int64_t n = int64_t(x.size());
        const int threads = g_threads.load();
        py::gil_scoped_release release;
        return zm::all_finite(p, n, threads);
      },
      py::arg("x"), "Whether every value of x is finite.");
  py::class_<ColumnSums>(m, "ColumnSums",
                         "Exact running column sums of a stream of integer batches.")
      .def(py::init<py::dtype, int, Ints, int64_t, int64_t, py::array_t<int64_t, 0>,
                    py::array_t<int64_t, 0>, py::array_t<int64_t, 0>,
                    py::array_t<int64_t, 0>>())
      .def("add", &ColumnSums::add, "Add x if it fits (see zmfast._stats.RunningSums).")
      .def("flush", &ColumnSums::flush, "Move the pending sums into the int64 totals.");
  m.def("affine", &affine, py::arg("x"), py::arg("x_offset"), py::arg("mean"), py::arg("inv"),
        py::arg("extent"), py::arg("x_strides"), py::arg("stats_strides"), py::arg("out"),
        py::arg("out_offset"), py::arg("out_strides"), py::arg("fresh") = false,
        py::arg("form") = py::none(), "out = (x - mean) * inv over a canonical strided space.");
  py::class_<ChannelPlan>(m, "ChannelPlan",
                          "A channel-kernel call planned for repeated arrays of one layout.")
      .def(py::init<const py::array&, const py::array&,
                    const py::array_t<float, py::array::c_style>&, const Ints&, const Ints&,
                    const Ints&, bool, bool>(),
           py::arg("x"), py::arg("out"), py::arg("coefficients"), py::arg("extent"),
           py::arg("x_strides"), py::arg("out_strides"), py::arg("planar"), py::arg("fresh"))
      .def("run", &ChannelPlan::run, py::arg("x"), py::arg("out"),
           "Run on x and out if they match the plan (else return False, writing nothing).");
  m.def("pixel_form", &pixel_form, py::arg("mean"), py::arg("inv"), py::arg("half"),
        py::arg("head") = 0,
        "(coefficients (g, 6, 16) float32, state (g,) uint8, head): the float32 form of "
        "per-pixel statistics in g = (n - head) // 16 groups of 16 columns from column head, "
        "and how each group met its bound (0: not, 1: all values, 2: with one value fixed in "
        "some columns); None below AVX-512.");
  m.def("channel_coefficients", &channel_coefficients, py::arg("mean"), py::arg("inv"),
        py::arg("half"), "float32 coefficients (k, r, r_low, b) of per-channel statistics, or None.");
  m.def("affine_channels", &affine_channels, py::arg("x"), py::arg("x_offset"),
        py::arg("coefficients"), py::arg("extent"), py::arg("x_strides"), py::arg("out"),
        py::arg("out_offset"), py::arg("out_strides"), py::arg("planar"), py::arg("fresh") = false,
        "out = fma(x - k, r, fma(x - k, r_low, b)) in float32 for uint8 x with per-channel statistics.");
  m.def("stream_bytes", []() { return zm::stream_bytes(); },
        "Calls into an out= array whose input and output bytes together reach this many "
        "get streaming stores.");
  m.def("set_stream_bytes",
        [](int64_t bytes) { zm::stream_bytes_setting().store(bytes < 0 ? 0 : bytes); },
        "Set the bytes (input and output together) from which calls into out= stream.");
  m.def("set_num_threads", [](int n) { g_threads.store(n < 1 ? 1 : n); });
  m.def("simd_level", []() { return std::string(zm::level_name(zm::current_level())); },
        "The SIMD level the kernels use now.");
  m.def("best_simd_level", []() { return std::string(zm::level_name(zm::detect_level())); },
        "The best SIMD level this CPU supports.");
  m.def(
      "set_simd_level",
      [](const std::string& name) {
        zm::Level wanted = zm::Level::baseline;
        if (name == "avx2") wanted = zm::Level::avx2;
        else if (name == "avx512") wanted = zm::Level::avx512;
        else if (name != "baseline") throw py::value_error("SIMD level must be baseline, avx2 or avx512");
        return std::string(zm::level_name(zm::set_level(wanted)));
      },
      "Use a SIMD level (capped at the CPU's best); returns the level now in use.");
  m.def("vnni", []() { return zm::use_vnni(); },
        "Whether the AVX512-VNNI kernels (uint8 column, per-channel and row sums) are in use.");
  m.def("set_vnni", [](bool enabled) { return zm::set_vnni(enabled); }, py::arg("enabled"),
        "Allow the AVX512-VNNI kernels where the CPU has them (tests turn them off to run the "
        "plain AVX-512 ones); returns whether they are allowed now.");
  m.def(
      "floor_read",
      [](const py::array_t<uint8_t, py::array::c_style>& x) {
        const uint8_t* p = x.data();
        const int64_t n = int64_t(x.size());
        const int threads = g_threads.load();
        py::gil_scoped_release release;
        return zm::floor_read(p, n, threads);
      },
      "Benchmark floor: the sum of every byte of a C-contiguous uint8 array.");
  m.def(
      "floor_convert",
      [](const py::array_t<uint8_t, py::array::c_style>& x,
         py::array_t<float, py::array::c_style> out, bool stream) {
        if (out.size() != x.size()) throw py::value_error("out must have x's size");
        const uint8_t* p = x.data();
        float* o = out.mutable_data();
        const int64_t n = int64_t(x.size());
        const int threads = g_threads.load();
        py::gil_scoped_release release;
        zm::floor_convert(p, o, n, stream, threads);
      },
      "Benchmark floor: uint8 -> float32 conversion, optionally with streaming stores.");
  m.def("get_num_threads", []() { return g_threads.load(); });
#ifdef ZMFAST_OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  m.attr("compiler") = ZMFAST_COMPILER;
  m.attr("cxx_flags") = ZMFAST_CXX_FLAGS;
  // Whether the AVX2 and AVX-512 kernels are built (not without GCC/Clang on x86-64, nor with
  // ZMFAST_NO_DISPATCH), and whether the AVX-512 ones run on SIMDe (ZMFAST_EMULATE_AVX512).
  m.attr("simd_dispatch") = bool(ZMFAST_X86_DISPATCH);
  m.attr("avx512_emulated") = zm::kEmulatedAvx512;
}
