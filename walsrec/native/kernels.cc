// Selection kernels for ranking (plain C++17, no TensorFlow): loaded with ctypes by
// walsrec/native/__init__.py, built on first use like the fused WALS op.
//
// walsrec_top_k_f32 / _f64: the k best candidates of every row of a dense score block, in one
//   pass over the row with a k-entry heap (no copy of the block, no full sort, no argpartition);
//   blocks of 32 scores none of which beats the heap's threshold are passed over in one
//   vectorized test (3x faster on ML-20M rows: most blocks, once the heap is full).
//   The rules are walsrec.inference.topk.top_k's: an item is a candidate unless it is a stored
//   entry of the row's exclusion CSR row (sorted indices, explicit zeros removed by the caller),
//   not allowed, or -inf; best first, equal scores to the lower item index; rows with fewer
//   candidates padded with item -1 and -inf. A NaN candidate is an error: the function
//   returns the first such row (or -1), and the caller raises.
// walsrec_top_n_csr: the n largest stored entries of every CSR row, ties to the earlier stored
//   entry, as a keep mask over the entries (walsrec.models.itemknn.top_n_per_row's rule).
// walsrec_ranked_top_k: top_k's result when every row has the same scores (popularity): the
//   caller ranks the items once (best first, ties to the lower index), and each row walks that
//   order past its excluded or disallowed items, marked in a per-thread byte map, until it has
//   k; O(k + the row's excluded items) per row instead of a pass over the catalogue.
// walsrec_rank_within_groups: each row's rank among the rows of its group by an int64 key,
//   with a counting sort by group and then each group's keys sorted on its own (groups over
//   threads), instead of one sort of all rows by (group, key). Rows of a group with equal keys
//   are ranked by row and marked in out_tied; returns how many rows are so marked.
// walsrec_observed_sums_f32 / _f64: per CSR row u, the sums over its stored entries (u, i) of
//   (w0 + extra) (t - p)^2 and of p^2, with p = x_u . y_i accumulated in float64 from factors
//   in the training dtype (the WALS objective's observed part; the caller sums the rows, so the
//   total does not depend on the threads). Float32 factors are half the memory traffic of
//   the item rows gathered per entry, and convert to float64 exactly.
//
// Rows are split into contiguous ranges over `n_threads` std::threads.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <utility>
#include <vector>

namespace {

template <typename T>
struct Entry {
  T score;
  int64_t index;
};

// True when a ranks below b: a lower score, or an equal score at a later index.
template <typename T>
inline bool worse(const Entry<T>& a, const Entry<T>& b) {
  return a.score < b.score || (a.score == b.score && a.index > b.index);
}

// A min-heap under `worse`: heap[0] is the entry that the next better candidate replaces.
template <typename T>
void sift_down(Entry<T>* heap, int64_t size, int64_t position) {
  for (;;) {
    int64_t left = 2 * position + 1;
    if (left >= size) return;
    int64_t child = left;
    if (left + 1 < size && worse(heap[left + 1], heap[left])) child = left + 1;
    if (!worse(heap[child], heap[position])) return;
    std::swap(heap[child], heap[position]);
    position = child;
  }
}

template <typename T>
void sift_up(Entry<T>* heap, int64_t position) {
  while (position > 0) {
    int64_t parent = (position - 1) / 2;
    if (!worse(heap[position], heap[parent])) return;
    std::swap(heap[position], heap[parent]);
    position = parent;
  }
}

// Scores tested at once before the per-item loop looks at them (two AVX-512 registers of
// float32).
constexpr int64_t kSkipBlock = 32;

template <typename T>
int64_t top_k_range(const T* scores, int64_t row_begin, int64_t row_end, int64_t n_items,
                    int64_t k, const int64_t* exclude_indptr, const int32_t* exclude_indices,
                    const uint8_t* allowed, int64_t* out_items, float* out_scores) {
  const T negative_infinity = -std::numeric_limits<T>::infinity();
  std::vector<Entry<T>> heap(static_cast<size_t>(std::min(k, n_items)) + 1);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const T* values = scores + row * n_items;
    const int32_t* excluded = nullptr;
    const int32_t* excluded_end = nullptr;
    if (exclude_indptr != nullptr) {
      excluded = exclude_indices + exclude_indptr[row];
      excluded_end = exclude_indices + exclude_indptr[row + 1];
    }
    const int64_t capacity = std::min(k, n_items);
    int64_t size = 0;
    T threshold = negative_infinity;  // a candidate must beat it: heap[0] once the heap is full
    for (int64_t block = 0; block < n_items; block += kSkipBlock) {
      const int64_t block_end = std::min(block + kSkipBlock, n_items);
      // Once the heap is full almost no score beats its threshold: a whole block that holds
      // none (and no NaN: !(v <= t) is true for both) is skipped with one vectorized test.
      if (block_end - block == kSkipBlock) {
        unsigned hits = 0;
        for (int64_t j = 0; j < kSkipBlock; ++j) hits |= !(values[block + j] <= threshold);
        if (hits == 0) continue;
      }
      for (int64_t item = block; item < block_end; ++item) {
        const T value = values[item];
        if (!(value > threshold)) {
          if (!std::isnan(value)) continue;  // NaN fails every comparison: check it is excluded
        }
        if (excluded != nullptr) {
          while (excluded < excluded_end && *excluded < item) ++excluded;
          if (excluded < excluded_end && *excluded == item) continue;
        }
        if (allowed != nullptr && !allowed[item]) continue;
        if (std::isnan(value)) return row;
        // Items come in increasing index order, so a score equal to heap[0]'s loses to it.
        if (size < capacity) {
          heap[size] = Entry<T>{value, item};
          sift_up(heap.data(), size);
          ++size;
          if (size == capacity) threshold = heap[0].score;
        } else {
          heap[0] = Entry<T>{value, item};
          sift_down(heap.data(), size, 0);
          threshold = heap[0].score;
        }
      }
    }
    std::sort(heap.begin(), heap.begin() + size,
              [](const Entry<T>& a, const Entry<T>& b) { return worse(b, a); });
    int64_t* items = out_items + row * k;
    float* best = out_scores + row * k;
    for (int64_t position = 0; position < k; ++position) {
      if (position < size) {
        items[position] = heap[position].index;
        best[position] = static_cast<float>(heap[position].score);
      } else {
        items[position] = -1;
        best[position] = -std::numeric_limits<float>::infinity();
      }
    }
  }
  return -1;
}

template <typename Body>
int64_t over_threads(int64_t n_rows, int n_threads, Body body) {
  n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n_threads, n_rows)));
  if (n_threads == 1) return body(0, n_rows);
  std::vector<int64_t> results(n_threads, -1);
  std::vector<std::thread> threads;
  const int64_t per_thread = (n_rows + n_threads - 1) / n_threads;
  for (int t = 0; t < n_threads; ++t) {
    const int64_t begin = std::min(n_rows, t * per_thread);
    const int64_t end = std::min(n_rows, begin + per_thread);
    threads.emplace_back([&results, &body, t, begin, end] { results[t] = body(begin, end); });
  }
  for (auto& thread : threads) thread.join();
  for (int64_t result : results) {
    if (result >= 0) return result;  // the first failing row: ranges are in row order
  }
  return -1;
}

template <typename T>
int64_t top_k(const T* scores, int64_t n_rows, int64_t n_items, int64_t k,
              const int64_t* exclude_indptr, const int32_t* exclude_indices,
              const uint8_t* allowed, int64_t* out_items, float* out_scores, int n_threads) {
  return over_threads(n_rows, n_threads, [&](int64_t begin, int64_t end) {
    return top_k_range(scores, begin, end, n_items, k, exclude_indptr, exclude_indices, allowed,
                       out_items, out_scores);
  });
}

template <typename T>
int64_t observed_sums(const T* users, const T* items, int64_t n_rows, int64_t dim,
                      const int64_t* indptr, const int32_t* indices, const T* extra,
                      const T* targets, double unobserved_weight, double* out_error,
                      double* out_squared, int n_threads) {
  return over_threads(n_rows, n_threads, [&](int64_t begin, int64_t end) -> int64_t {
    for (int64_t row = begin; row < end; ++row) {
      const T* x = users + row * dim;
      double error = 0.0;
      double squared = 0.0;
      for (int64_t entry = indptr[row]; entry < indptr[row + 1]; ++entry) {
        const T* y = items + static_cast<int64_t>(indices[entry]) * dim;
        double p = 0.0;
#pragma omp simd reduction(+ : p)
        for (int64_t j = 0; j < dim; ++j) p += static_cast<double>(x[j]) * y[j];
        const double t = targets == nullptr ? 1.0 : static_cast<double>(targets[entry]);
        const double residual = t - p;
        error += (unobserved_weight + static_cast<double>(extra[entry])) * residual * residual;
        squared += p * p;
      }
      out_error[row] = error;
      out_squared[row] = squared;
    }
    return int64_t{-1};
  });
}

}  // namespace

extern "C" {

int64_t walsrec_ranked_top_k(const int64_t* order, const float* item_scores, int64_t n_items,
                             int64_t n_rows, int64_t k, const int64_t* exclude_indptr,
                             const int32_t* exclude_indices, const uint8_t* allowed,
                             int64_t* out_items, float* out_scores, int n_threads) {
  const float negative_infinity = -std::numeric_limits<float>::infinity();
  return over_threads(n_rows, n_threads, [&](int64_t begin, int64_t end) -> int64_t {
    std::vector<uint8_t> excluded(static_cast<size_t>(n_items), 0);
    for (int64_t row = begin; row < end; ++row) {
      if (exclude_indptr != nullptr) {
        for (int64_t e = exclude_indptr[row]; e < exclude_indptr[row + 1]; ++e) {
          excluded[exclude_indices[e]] = 1;
        }
      }
      int64_t* items = out_items + row * k;
      float* best = out_scores + row * k;
      int64_t size = 0;
      for (int64_t rank = 0; rank < n_items && size < k; ++rank) {
        const int64_t item = order[rank];
        const float score = item_scores[item];
        if (score == negative_infinity) break;  // ranked best first: only -inf follows
        if (excluded[item] || (allowed != nullptr && !allowed[item])) continue;
        items[size] = item;
        best[size] = score;
        ++size;
      }
      for (; size < k; ++size) {
        items[size] = -1;
        best[size] = negative_infinity;
      }
      if (exclude_indptr != nullptr) {
        for (int64_t e = exclude_indptr[row]; e < exclude_indptr[row + 1]; ++e) {
          excluded[exclude_indices[e]] = 0;
        }
      }
    }
    return int64_t{-1};
  });
}

int64_t walsrec_rank_within_groups(const int32_t* groups, const int64_t* keys, int64_t n_rows,
                                   int64_t n_groups, int64_t* out_rank, uint8_t* out_tied,
                                   int n_threads) {
  std::vector<int64_t> starts(static_cast<size_t>(n_groups) + 1, 0);
  for (int64_t row = 0; row < n_rows; ++row) ++starts[groups[row] + 1];
  for (int64_t group = 0; group < n_groups; ++group) starts[group + 1] += starts[group];
  std::vector<int64_t> order(static_cast<size_t>(n_rows));
  {
    std::vector<int64_t> next(starts.begin(), starts.end() - 1);
    for (int64_t row = 0; row < n_rows; ++row) order[next[groups[row]]++] = row;
  }
  std::atomic<int64_t> total_tied{0};
  over_threads(n_groups, n_threads, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<int64_t, int64_t>> members;
    int64_t tied = 0;
    for (int64_t group = begin; group < end; ++group) {
      const int64_t first = starts[group];
      const int64_t size = starts[group + 1] - first;
      members.resize(static_cast<size_t>(size));
      for (int64_t i = 0; i < size; ++i) {
        const int64_t row = order[first + i];
        members[i] = {keys[row], row};
      }
      std::sort(members.begin(), members.end());  // equal keys: the lower row first
      for (int64_t i = 0; i < size; ++i) {
        const int64_t row = members[i].second;
        out_rank[row] = i;
        const bool same_as_previous = i > 0 && members[i].first == members[i - 1].first;
        const bool same_as_next = i + 1 < size && members[i].first == members[i + 1].first;
        out_tied[row] = same_as_previous || same_as_next;
        tied += out_tied[row];
      }
    }
    total_tied += tied;
    return int64_t{-1};
  });
  return total_tied.load();
}

int64_t walsrec_observed_sums_f32(const float* users, const float* items, int64_t n_rows,
                                  int64_t dim, const int64_t* indptr, const int32_t* indices,
                                  const float* extra, const float* targets,
                                  double unobserved_weight, double* out_error,
                                  double* out_squared, int n_threads) {
  return observed_sums(users, items, n_rows, dim, indptr, indices, extra, targets,
                       unobserved_weight, out_error, out_squared, n_threads);
}

int64_t walsrec_observed_sums_f64(const double* users, const double* items, int64_t n_rows,
                                  int64_t dim, const int64_t* indptr, const int32_t* indices,
                                  const double* extra, const double* targets,
                                  double unobserved_weight, double* out_error,
                                  double* out_squared, int n_threads) {
  return observed_sums(users, items, n_rows, dim, indptr, indices, extra, targets,
                       unobserved_weight, out_error, out_squared, n_threads);
}

int64_t walsrec_top_k_f32(const float* scores, int64_t n_rows, int64_t n_items, int64_t k,
                          const int64_t* exclude_indptr, const int32_t* exclude_indices,
                          const uint8_t* allowed, int64_t* out_items, float* out_scores,
                          int n_threads) {
  return top_k(scores, n_rows, n_items, k, exclude_indptr, exclude_indices, allowed, out_items,
               out_scores, n_threads);
}

int64_t walsrec_top_k_f64(const double* scores, int64_t n_rows, int64_t n_items, int64_t k,
                          const int64_t* exclude_indptr, const int32_t* exclude_indices,
                          const uint8_t* allowed, int64_t* out_items, float* out_scores,
                          int n_threads) {
  return top_k(scores, n_rows, n_items, k, exclude_indptr, exclude_indices, allowed, out_items,
               out_scores, n_threads);
}

int64_t walsrec_top_n_csr(const int64_t* indptr, const float* data, int64_t n_rows, int64_t n,
                          uint8_t* keep, int n_threads) {
  return over_threads(n_rows, n_threads, [&](int64_t begin, int64_t end) -> int64_t {
    std::vector<Entry<float>> heap(static_cast<size_t>(n) + 1);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t first = indptr[row];
      const int64_t length = indptr[row + 1] - first;
      if (length <= n) {
        std::fill(keep + first, keep + first + length, uint8_t{1});
        continue;
      }
      std::fill(keep + first, keep + first + length, uint8_t{0});
      int64_t size = 0;
      // Entries come in storage order, so an entry equal to heap[0]'s loses to it.
      for (int64_t position = first; position < first + length; ++position) {
        const Entry<float> entry{data[position], position};
        if (size < n) {
          heap[size] = entry;
          sift_up(heap.data(), size);
          ++size;
        } else if (entry.score > heap[0].score) {
          heap[0] = entry;
          sift_down(heap.data(), size, 0);
        }
      }
      for (int64_t i = 0; i < size; ++i) keep[heap[i].index] = 1;
    }
    return int64_t{-1};
  });
}

}  // extern "C"
