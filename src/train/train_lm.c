/* Training a language model on text: each step takes a batch of windows, predicts the
 * next byte at every position (cross-entropy over all B·T positions), goes backward and
 * updates. The run is cut into intervals of eval_every steps, each ending with an
 * evaluation of the validation text; the monitor of the classification loop (gradient
 * norm and clipping, schedule, early stopping, history, metrics rows), its progress bar
 * and its plot serve here as they do there, an interval standing for an epoch.
 *
 * With sequential windows and a model that carries state, each batch continues the
 * sequences of the one before from their final states, detached: truncated
 * backpropagation through time. An evaluation resets that state (it reads other text),
 * as does the tracks' return to the start of the text.
 *
 * Full checkpoints are those of the classification loop (ember/checkpoint.h): the
 * windows' generator and batch number stand in for the loader's position, an interval
 * for an epoch, and the carried states travel as "train.hidden.<name>" tensors, so that
 * a resumed run continues bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/checkpoint.h"
#include "ember/error.h"
#include "ember/gpt.h"
#include "ember/lm.h"
#include "ember/runtime.h"
#include "ember/safetensors.h"
#include "train/train_internal.h"

em_lm_opts em_lm_defaults(void)
{
    em_lm_opts o;
    memset(&o, 0, sizeof o);
    o.train = em_train_defaults();
    o.train.batch_size = 32;
    o.train.optimizer = EM_OPTIM_ADAM;
    o.train.optim = em_optim_defaults(EM_OPTIM_ADAM);
    o.train.optim.lr = 2e-3f;
    o.seq_len = 64;
    o.order = EM_TEXT_RANDOM;
    o.carry = true;
    return o;
}

typedef struct lm_run {
    em_model *m;
    const em_text *train, *val;
    em_lm_opts o;
    em_optim *opt;
    em_text_windows *windows;
    em_metrics *metrics;
    em_progress progress;
    em_monitor mon;
    FILE *log;
    int64_t total_steps, interval, intervals;
    int64_t steps;
    double train_seconds;
    em_lm_figures last_val;
    bool interrupted;
    /* Checkpoints and resuming. */
    int first_interval;
    int64_t resumed_done;     /* steps of the first interval done before the checkpoint */
    double resumed_loss_sum;
    int checkpoints;
} lm_run;

static int validate(void *ctx, double *loss, double *accuracy)
{
    lm_run *r = ctx;
    if (em_evaluate_text(r->m, r->val, r->o.seq_len, r->o.train.eval_batch_size, r->o.eval_bytes, &r->last_val) !=
        EM_OK)
        return EM_ERR;
    *loss = r->last_val.loss;
    *accuracy = r->last_val.accuracy;
    return EM_OK;
}

static bool stop_requested(const lm_run *r)
{
    const em_train_opts *t = &r->o.train;
    return (t->stop_requested && *t->stop_requested) || (t->max_steps > 0 && r->steps >= t->max_steps);
}

/* One training step on the next batch; *loss_out is its loss. */
static int step(lm_run *r, int interval, float *loss_out)
{
    em_text_batch b;
    em_text_windows_next(r->windows, &b);
    if (b.restart && r->o.order == EM_TEXT_SEQUENTIAL)
        em_model_reset_carry(r->m);
    int64_t step_no = r->steps + 1;
    em_tensor *logits = em_forward_tokens(r->m, b.inputs, b.batch, b.steps);
    int64_t rows = b.batch * b.steps;
    em_tensor *flat = logits ? em_reshape(logits, 2, (int64_t[]){rows, logits->shape[logits->ndim - 1]}) : NULL;
    em_tensor *loss = em_cross_entropy(flat, b.targets, 0.0f);
    if (!loss) {
        em_step_end();
        return em_error_prefix("step %lld: ", (long long)step_no);
    }
    float value = em_item(loss);
    *loss_out = value;
    if (!isfinite(value)) {
        em_monitor_diverged(&r->mon, step_no, interval, value);
        r->steps++;
        em_step_end();
        return em_error("training diverged: the loss is %s at step %lld; try a smaller learning rate than %g",
                        isnan(value) ? "NaN" : "infinite", (long long)step_no, (double)em_optim_lr(r->opt));
    }
    if (em_backward(loss) != EM_OK) {
        em_step_end();
        return em_error_prefix("step %lld: ", (long long)step_no);
    }
    em_monitor_gradients(&r->mon, flat, b.targets, rows);
    em_optim_step(r->opt);
    r->steps++;
    em_monitor_step(&r->mon, step_no, interval, value);
    return EM_OK;
}

/* Where a stop writes its checkpoint. */
static const char *stop_path(const lm_run *r)
{
    return r->o.train.checkpoint_path ? r->o.train.checkpoint_path : r->o.train.interrupt_path;
}

/* The carried states (sequential windows), as tensors of the checkpoint. */
static int carried_states(lm_run *r, em_named_tensor *out, char (*names)[80], int cap)
{
    int n = 0;
    if (!em_model_carries(r->m))
        return 0;
    for (int i = 0; i < em_model_hidden_count(r->m) && n < cap; i++) {
        int64_t shape[2];
        const char *name = em_model_hidden_name(r->m, i, shape);
        int64_t dims[3] = {shape[0], r->o.train.batch_size, shape[1]};
        em_tensor *t = em_tensor_empty(NULL, 3, dims);
        if (!t)
            return EM_ERR;
        if (em_model_get_hidden(r->m, name, dims[1], t->data) != EM_OK)
            continue; /* nothing carried yet (a restart or an evaluation reset it) */
        snprintf(names[n], sizeof names[n], "train.hidden.%s", name);
        out[n] = (em_named_tensor){names[n], t, true};
        n++;
    }
    return n;
}

/* The full checkpoint after `done` steps of interval k (done == its length: the interval
 * and its evaluation are over, the next one starts). */
static int write_checkpoint(lm_run *r, const char *path, int k, double loss_sum, int64_t done, bool interval_over)
{
    em_train_position pos;
    memset(&pos, 0, sizeof pos);
    pos.step = r->steps;
    pos.batch_size = r->o.train.batch_size;
    pos.train_count = r->train->size;
    pos.shuffle = r->o.order == EM_TEXT_RANDOM;
    em_text_windows_position w = em_text_windows_tell(r->windows);
    pos.loader.epoch_rng = w.rng;
    pos.loader.batches_done = w.next;
    pos.epoch = interval_over ? k + 1 : k;
    if (!interval_over) {
        pos.epoch_loss_sum = loss_sum;
        pos.epoch_items = done;
        pos.epoch_correct = r->mon.correct;
        pos.epoch_seen = r->mon.seen;
        pos.epoch_grad_norms = r->mon.grad_norms;
        pos.epoch_grad_norm_sum = r->mon.grad_norm_sum;
    }
    const em_monitor *mon = &r->mon;
    if (mon->schedule && em_schedule_save_state(mon->schedule, pos.schedule, sizeof pos.schedule) != EM_OK)
        return em_error_prefix("checkpoint after step %lld: ", (long long)r->steps);
    pos.best_val = mon->best_val;
    pos.best_epoch = mon->best_epoch;
    pos.since_best = mon->since_best;
    int states = em_model_hidden_count(r->m);
    em_named_tensor *extra = malloc((size_t)(1 + states) * sizeof *extra);
    char(*names)[80] = malloc((size_t)(states ? states : 1) * sizeof *names);
    if (!extra || !names) {
        free(extra);
        free(names);
        return em_error("checkpoint after step %lld: out of memory", (long long)r->steps);
    }
    int n = 0;
    if (mon->best_weights && mon->best_epoch > 0) {
        int count;
        const em_named_tensor *state = em_model_state(r->m, &count);
        int64_t total = 0;
        for (int i = 0; i < count; i++)
            total += state[i].tensor->numel;
        extra[n++] = (em_named_tensor){"train.best_weights", em_tensor_wrap(NULL, 1, &total, mon->best_weights), true};
    }
    int carried = carried_states(r, extra + n, names, states);
    em_train_history history;
    em_monitor_run_history(mon, &history);
    int rc = carried < 0 ? EM_ERR
                         : em_checkpoint_save_with_history(path, r->m, r->opt, &pos, extra, n + carried, &history);
    em_step_end();
    free(extra);
    free(names);
    if (rc != EM_OK)
        return em_error_prefix("checkpoint after step %lld: ", (long long)r->steps);
    r->checkpoints++;
    return EM_OK;
}

/* Model, optimizer, windows, monitor and carried states as the checkpoint left them. */
static int resume_from(lm_run *r, const char *path)
{
    em_train_position pos;
    if (em_checkpoint_read_position(path, &pos) != EM_OK)
        return EM_ERR;
    bool random = r->o.order == EM_TEXT_RANDOM;
    if (pos.batch_size != r->o.train.batch_size || pos.train_count != r->train->size || pos.shuffle != random)
        return em_error("%s was written training on %lld bytes of text in batches of %lld (%s windows); this run "
                        "has %lld bytes in batches of %lld (%s windows), so the windows could not continue: use the "
                        "same text and options to resume",
                        path, (long long)pos.train_count, (long long)pos.batch_size, pos.shuffle ? "random" : "sequential",
                        (long long)r->train->size, (long long)r->o.train.batch_size, random ? "random" : "sequential");
    if (pos.step >= r->total_steps)
        return em_error("%s is at step %lld, the end of the %lld steps asked for: nothing left to train (ask for "
                        "more steps)",
                        path, (long long)pos.step, (long long)r->total_steps);
    if (em_checkpoint_load(path, r->m, r->opt, &pos) != EM_OK)
        return EM_ERR;
    em_text_windows_position w = {pos.loader.epoch_rng, pos.loader.batches_done};
    if (em_text_windows_seek(r->windows, &w) != EM_OK)
        return em_error_prefix("%s: ", path);
    r->steps = pos.step;
    r->first_interval = pos.epoch;
    r->resumed_done = pos.epoch_items;
    r->resumed_loss_sum = pos.epoch_loss_sum;
    em_monitor *mon = &r->mon;
    if (mon->schedule && pos.schedule[0] && em_schedule_load_state(mon->schedule, pos.schedule) != EM_OK)
        return em_error_prefix("%s: ", path);
    if (em_monitor_restore_history(mon, path, r->steps) != EM_OK)
        return EM_ERR;
    mon->best_val = pos.best_val;
    mon->best_epoch = pos.best_epoch;
    mon->since_best = pos.since_best;
    mon->correct = pos.epoch_correct;
    mon->seen = pos.epoch_seen;
    mon->grad_norms = pos.epoch_grad_norms;
    mon->grad_norm_sum = pos.epoch_grad_norm_sum;
    em_st_file *f = em_st_open(path);
    if (!f)
        return EM_ERR;
    int rc = EM_OK;
    if (mon->best_weights && mon->best_epoch > 0) {
        int count;
        const em_named_tensor *state = em_model_state(r->m, &count);
        int64_t total = 0;
        for (int i = 0; i < count; i++)
            total += state[i].tensor->numel;
        em_tensor *dst = em_tensor_wrap(NULL, 1, &total, mon->best_weights);
        rc = dst && em_st_load_into(f, "train.best_weights", dst) == EM_OK ? EM_OK : EM_ERR;
    }
    /* Carried states, when the run that wrote the checkpoint had some. */
    for (int i = 0; rc == EM_OK && em_model_carries(r->m) && i < em_model_hidden_count(r->m); i++) {
        int64_t shape[2];
        const char *name = em_model_hidden_name(r->m, i, shape);
        char key[80];
        snprintf(key, sizeof key, "train.hidden.%s", name);
        int64_t dims[3] = {shape[0], r->o.train.batch_size, shape[1]};
        em_tensor *t = em_tensor_empty(NULL, 3, dims);
        if (!t || em_st_find(f, key) == NULL)
            continue;
        rc = em_st_load_into(f, key, t) == EM_OK ? em_model_set_hidden(r->m, name, dims[1], t->data) : EM_ERR;
    }
    em_st_close(f);
    em_step_end();
    return rc == EM_OK ? EM_OK : em_error_prefix("%s: ", path);
}

static void print_figures(FILE *out, const char *what, const em_lm_figures *f)
{
    fprintf(out, "  %s %.4f bits/byte (perplexity %.3f, accuracy %.1f%%)", what, f->bits_per_byte, f->perplexity,
            100.0 * f->accuracy);
}

static int train_intervals(lm_run *r, em_lm_result *result)
{
    const int64_t tokens_per_step = r->o.train.batch_size * r->o.seq_len;
    const em_train_opts *t = &r->o.train;
    for (int k = r->first_interval; k <= r->intervals; k++) {
        /* Interval k covers steps (k - 1) * interval + 1 ... */
        int64_t start = (int64_t)(k - 1) * r->interval;
        int64_t n = r->total_steps - start < r->interval ? r->total_steps - start : r->interval;
        em_model_set_training(r->m, true);
        em_progress_epoch_begin(&r->progress, k);
        double t0 = em_now(), loss_sum = 0.0;
        int64_t done = 0, correct_before = 0, seen_before = 0;
        if (k == r->first_interval && r->resumed_done > 0) {
            done = r->resumed_done;
            loss_sum = r->resumed_loss_sum;
        }
        while (done < n) {
            float value = 0.0f;
            if (step(r, k, &value) != EM_OK)
                return EM_ERR;
            loss_sum += value;
            done++;
            em_progress_step(&r->progress, done, done * tokens_per_step, loss_sum / (double)done);
            bool due = t->checkpoint_path && t->checkpoint_every > 0 && r->steps % t->checkpoint_every == 0;
            if (due && write_checkpoint(r, t->checkpoint_path, k, loss_sum, done, false) != EM_OK)
                return EM_ERR;
            if (stop_requested(r)) {
                if (!due && stop_path(r) && write_checkpoint(r, stop_path(r), k, loss_sum, done, false) != EM_OK)
                    return EM_ERR;
                r->interrupted = true;
                break;
            }
        }
        double seconds = em_now() - t0;
        r->train_seconds += seconds;
        em_lm_figures train_fig;
        int64_t seen = r->mon.seen - seen_before;
        /* Each step's loss is a mean over its batch's positions, all of the same count. */
        em_lm_figures_set(&train_fig, done ? loss_sum / (double)done * (double)seen : 0.0,
                          r->mon.correct - correct_before, seen);
        if (result) {
            result->train = train_fig;
            result->steps = r->steps;
        }
        if (r->interrupted)
            return EM_OK;
        em_epoch_stats s;
        memset(&s, 0, sizeof s);
        s.epoch = k;
        s.seconds = seconds;
        s.train_loss = loss_sum / (double)done;
        s.samples_per_second = seconds > 0.0 ? (double)(done * tokens_per_step) / seconds : 0.0;
        s.test_loss = s.test_accuracy = NAN;
        r->last_val.bytes = 0;
        if (em_monitor_epoch_end(&r->mon, &s, r->steps) != EM_OK)
            return EM_ERR;
        em_progress_interrupt(&r->progress);
        if (result) {
            result->evaluations = r->val ? k : 0;
            result->val = r->last_val;
        }
        if (!r->progress.quiet) {
            fprintf(r->log, "step %lld/%lld", (long long)r->steps, (long long)r->total_steps);
            print_figures(r->log, "train", &train_fig);
            if (r->last_val.bytes)
                print_figures(r->log, " val", &r->last_val);
            fprintf(r->log, "  %.0f tokens/s\n", s.samples_per_second);
            fflush(r->log);
        }
        bool last = k == r->intervals || r->mon.stop;
        const char *path = last ? t->checkpoint_path : stop_requested(r) ? stop_path(r) : NULL;
        if (path && write_checkpoint(r, path, k, 0.0, 0, true) != EM_OK)
            return EM_ERR;
        if (r->mon.stop || stop_requested(r)) {
            r->interrupted = !r->mon.stop && r->steps < r->total_steps;
            return EM_OK;
        }
    }
    return EM_OK;
}

static int check_options(const em_model *m, const em_text *train, const em_text *val, const em_lm_opts *o)
{
    const em_train_opts *t = &o->train;
    if (!m)
        return em_error("train: no model (an earlier step failed: %s)", ember_last_error());
    if (!train)
        return em_error("train: no training text");
    if (em_model_vocab_size(m) == 0)
        return em_error("train: text needs a model that takes token ids: its first layer must be an embedding "
                        "(e.g. 'embedding 256 64')");
    int64_t out[EM_MAX_DIMS];
    int nd = em_model_output_shape(m, out);
    if (nd != 2 || out[1] < em_model_vocab_size(m))
        return em_error("train: a language model gives a logit per token at every position ([T, V] per example, V "
                        ">= its vocabulary of %lld), but this model's output is %s: end it with 'linear %lld'",
                        (long long)em_model_vocab_size(m), em_dims_str(nd, out), (long long)em_model_vocab_size(m));
    if (o->seq_len < 1 || t->batch_size < 1 || o->steps < 0 || o->eval_every < 0 || o->eval_bytes < 0 ||
        t->epochs < 1 || t->eval_batch_size < 0)
        return em_error("train: sequence length %lld, batch %lld, epochs %d must be at least 1 and steps %lld, "
                        "eval_every %lld, eval_bytes %lld >= 0",
                        (long long)o->seq_len, (long long)t->batch_size, t->epochs, (long long)o->steps,
                        (long long)o->eval_every, (long long)o->eval_bytes);
    em_gpt_config gpt;
    if (em_model_is_gpt(m) && em_model_gpt_config(m, &gpt) == EM_OK && o->seq_len > gpt.context)
        return em_error("train: windows of %lld tokens are longer than the model's context of %lld positions (a "
                        "gpt has a learned position for each): use a sequence length of at most %lld",
                        (long long)o->seq_len, (long long)gpt.context, (long long)gpt.context);
    if (t->validation || t->val_split != 0.0)
        return em_error("train: text is split with em_text_split, not with a validation dataset or val_split");
    if (t->unfreeze_after > 0)
        return em_error("train: unfreezing is not available for text");
    if (t->patience > 0 && !val)
        return em_error("train: early stopping (patience %d) needs validation text", t->patience);
    if (em_text_check_vocab(train, em_model_vocab_size(m)) != EM_OK ||
        (val && em_text_check_vocab(val, em_model_vocab_size(m)) != EM_OK))
        return em_error_prefix("train: ");
    return EM_OK;
}

static void describe(char *buf, size_t cap, const lm_run *r)
{
    snprintf(buf, cap, "%s lr %g, batch %lld x %lld bytes, %s windows%s", em_optim_name(r->o.train.optimizer),
             (double)r->o.train.optim.lr, (long long)r->o.train.batch_size, (long long)r->o.seq_len,
             r->o.order == EM_TEXT_SEQUENTIAL ? "sequential" : "random",
             r->o.order == EM_TEXT_SEQUENTIAL && em_model_carries(r->m) ? " (state carried)" : "");
}

static int write_plot(lm_run *r)
{
    char title[256], setup[200], subtitle[640];
    describe(setup, sizeof setup, r);
    snprintf(title, sizeof title, "Language model: %s", setup);
    snprintf(subtitle, sizeof subtitle, "loss in nats per byte (bits = nats / 0.693); training text %s%s%s",
             r->train->source, r->val ? ", validation " : "", r->val ? r->val->source : "");
    em_plot_data d = {.title = title, .subtitle = subtitle, .history = r->mon.history};
    return em_plot_training(r->o.train.plot_path, &d);
}

int em_train_lm(em_model *m, const em_text *train, const em_text *val, const em_lm_opts *o, em_lm_result *result)
{
    lm_run r;
    memset(&r, 0, sizeof r);
    r.o = o ? *o : em_lm_defaults();
    if (result) {
        memset(result, 0, sizeof *result);
        em_lm_figures_set(&result->train, 0.0, 0, 0);
        result->val = result->train_eval = result->train;
    }
    if (check_options(m, train, val, &r.o) != EM_OK)
        return EM_ERR;
    r.m = m;
    r.train = train;
    r.val = val;
    r.log = r.o.train.log ? r.o.train.log : stderr;
    double start = em_now();
    em_train_opts *t = &r.o.train;

    int rc = EM_ERR;
    r.windows = em_text_windows_new(train, t->batch_size, r.o.seq_len, r.o.order, t->seed);
    if (!r.windows)
        return em_error_prefix("train: ");
    int64_t per_pass = em_text_windows_per_pass(r.windows);
    r.total_steps = r.o.steps > 0 ? r.o.steps : per_pass * t->epochs;
    r.interval = r.o.eval_every > 0 ? r.o.eval_every : per_pass;
    if (r.interval > r.total_steps)
        r.interval = r.total_steps;
    r.intervals = (r.total_steps + r.interval - 1) / r.interval;
    if (r.intervals > 1000000) {
        em_error("train: %lld evaluations of the validation text; evaluate less often (eval_every)",
                 (long long)r.intervals);
        goto done;
    }
    /* The monitor counts in epochs: here, intervals. A cosine schedule spans the run. */
    t->epochs = (int)r.intervals;
    if (t->schedule.kind == EM_SCHEDULE_COSINE && t->schedule.total == 0 && t->schedule.per_step)
        t->schedule.total = r.total_steps;

    r.opt = em_optim_new_grouped(m, t->optimizer, &t->optim, t->param_groups, t->n_param_groups);
    if (!r.opt) {
        em_error_prefix("train: ");
        goto done;
    }
    if (t->metrics_path && !(r.metrics = em_metrics_open(t->metrics_path)))
        goto done;
    if (em_monitor_start_custom(&r.mon, m, r.opt, t, val ? validate : NULL, &r, r.metrics, r.interval, start) != EM_OK)
        goto done;
    em_progress_init(&r.progress, t->log, t->progress, (int)r.intervals, r.interval, r.interval * t->batch_size * r.o.seq_len);
    r.progress.unit = "interval";
    em_model_set_carry(m, r.o.order == EM_TEXT_SEQUENTIAL && r.o.carry && em_model_has_carry(m));
    r.first_interval = 1;
    if (t->resume_path && resume_from(&r, t->resume_path) != EM_OK)
        goto done;
    const int64_t steps_before = r.steps;
    if (!r.progress.quiet) {
        char setup[200];
        describe(setup, sizeof setup, &r);
        fprintf(r.log, "%s; %lld steps, %lld per pass over %lld training bytes\n", setup, (long long)r.total_steps,
                (long long)per_pass, (long long)train->size);
        fflush(r.log);
    }

    bool grad_was = em_set_grad_enabled(true);
    rc = train_intervals(&r, result);
    em_set_grad_enabled(grad_was);
    em_progress_interrupt(&r.progress);
    em_model_set_carry(m, false);
    em_monitor_finish(&r.mon, NULL);
    if (result) {
        result->steps = r.steps;
        result->seconds = r.train_seconds;
        result->tokens_per_second =
            r.train_seconds > 0.0 ? (double)((r.steps - steps_before) * t->batch_size * r.o.seq_len) / r.train_seconds
                                  : 0.0;
        result->best_evaluation = r.mon.best_epoch;
        result->early_stopped = r.mon.history->early_stopped;
        result->interrupted = r.interrupted;
        result->diverged = r.mon.history->diverged;
    }
    /* The training text evaluated like the validation text, for a like-for-like pair. */
    if (rc == EM_OK && val && result && result->val.bytes > 0 && !r.interrupted) {
        int64_t bytes = r.o.eval_bytes > 0 ? r.o.eval_bytes : val->size;
        rc = em_evaluate_text(m, train, r.o.seq_len, t->eval_batch_size, bytes, &result->train_eval);
    }

    char first_error[1024];
    snprintf(first_error, sizeof first_error, "%s", ember_last_error());
    int finish = em_metrics_close(r.metrics);
    r.metrics = NULL;
    if (finish == EM_OK && t->plot_path && r.steps > 0)
        finish = write_plot(&r);
    if (finish == EM_OK && rc == EM_OK && t->save_path)
        finish = em_save_weights(m, t->save_path);
    if (rc != EM_OK)
        em_error("%s", first_error);
    else
        rc = finish;
done:
    em_metrics_close(r.metrics);
    em_monitor_free(&r.mon);
    em_optim_free(r.opt);
    em_text_windows_free(r.windows);
    return rc;
}
