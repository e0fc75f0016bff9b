/* A minimal test harness: CHECK records a failure and goes on, the test's main returns
 * test_finish(). Fixtures are safetensors files under tests/fixtures written by
 * tests/make_fixtures.py with PyTorch. */
#ifndef EMBER_TESTLIB_H
#define EMBER_TESTLIB_H

#include <math.h>
#include <stdio.h>

#include "ember.h"

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        test_checks++;                                                                   \
        if (!(cond)) {                                                                   \
            test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);      \
        }                                                                                \
    } while (0)

#define CHECK_MSG(cond, ...)                                                             \
    do {                                                                                 \
        test_checks++;                                                                   \
        if (!(cond)) {                                                                   \
            test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);      \
            fprintf(stderr, __VA_ARGS__);                                                \
            fputc('\n', stderr);                                                         \
        }                                                                                \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                            \
    do {                                                                                 \
        double check_a_ = (double)(a), check_b_ = (double)(b);                           \
        test_checks++;                                                                   \
        if (!(fabs(check_a_ - check_b_) <= (tol))) {                                     \
            test_failures++;                                                             \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g (tol %g)\n",  \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_, (double)(tol));      \
        }                                                                                \
    } while (0)

/* An error was reported and its message contains `needle`. */
#define CHECK_ERROR_CONTAINS(needle) CHECK_MSG(test_error_contains(needle), \
    "last error \"%s\" lacks \"%s\"", ember_last_error(), needle)

int test_error_contains(const char *needle);

/* Largest |a[i] - b[i]| / (atol + rtol*|b[i]|) over n elements; <= 1 means close. */
double test_max_violation(const float *a, const float *b, int64_t n, double atol, double rtol);

/* Compares t (any strides) with expected (dense), printing the worst element on
 * failure. Returns 1 when close. */
int test_tensor_close(const char *what, const em_tensor *t, const float *expected,
                      double atol, double rtol);
/* Compares a dense gradient buffer with a fixture tensor of the same numel. */
int test_grad_close(const char *what, const float *grad, const em_tensor *expected,
                    double atol, double rtol);

/* Opens tests/fixtures/<name>.safetensors (aborts the test with a message if missing). */
em_st_file *test_fixture(const char *name);
/* Loads one tensor of a fixture into the step arena, as a leaf requiring gradients. */
em_tensor *test_fixture_input(em_st_file *f, const char *name);
/* Loads one tensor into the step arena (no gradient). */
em_tensor *test_fixture_tensor(em_st_file *f, const char *name);

/* ---- models against PyTorch fixtures ---- */
/* The fixture's tensor <prefix>.<name> as int32 ids (malloc'd); batch and steps are its
 * first two dimensions (steps its size when it has one). */
int32_t *test_fixture_ids(em_st_file *f, const char *prefix, const char *name, int64_t *batch, int64_t *steps);
/* Loads every tensor of the model's state from <prefix>.<name>, CHECKing each. */
void test_fixture_load_state(em_st_file *f, em_model *m, const char *prefix);
/* CHECKs every parameter's gradient against <prefix>.grad.<name> (atol 2e-5, rtol 1e-3). */
void test_fixture_check_grads(em_st_file *f, const em_model *m, const char *prefix);
/* Mean cross-entropy of logits [..., V] against one target per position; NULL for NULL. */
em_tensor *test_sequence_loss(em_tensor *logits, const int32_t *targets);
/* A language model's step against the fixture: the loss of logits, both compared with
 * <prefix>.logits and <prefix>.loss, then backward and test_fixture_check_grads. False
 * when there was no loss to compare. */
bool test_sequence_parity(em_st_file *f, const em_model *m, const char *prefix, em_tensor *logits,
                          const int32_t *targets);

/* Runs em_gradcheck and CHECKs max relative error < tol, printing the report. */
void test_gradcheck(const char *what, em_gradcheck_fn fn, void *user, em_tensor *const *inputs,
                    int n, double eps, double tol);

/* A tensor of the given shape with seeded N(0, scale^2) values, requiring grad. */
em_tensor *test_randn(em_rng *rng, int ndim, const int64_t *shape, float scale);

/* Path under the source tree ("tests/fixtures/x") in a static buffer. */
const char *test_path(const char *relative);
/* A fresh temporary directory for this test's files. */
const char *test_tmpdir(void);

/* True under EMBER_QUICK=1 (the sanitizer run): tests shrink their budgets. */
int test_quick(void);

int test_finish(void);

#endif
