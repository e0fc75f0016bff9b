/* The training loop: for each epoch, every batch goes forward, through the
 * cross-entropy, backward and into the optimizer; then the test set is evaluated. All
 * the memory a step needs comes from the step arena, which em_optim_step resets, so
 * once the arena has grown to a step's peak no step asks the system for memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/autograd.h"
#include "ember/checkpoint.h"
#include "ember/error.h"
#include "ember/runtime.h"
#include "ember/safetensors.h"
#include "ember/train.h"
#include "ember/transfer.h"
#include "train/divergence.h"
#include "train/train_internal.h"

em_train_opts em_train_defaults(void)
{
    em_train_opts o;
    memset(&o, 0, sizeof o);
    o.epochs = 1;
    o.batch_size = 64;
    o.optimizer = EM_OPTIM_SGD;
    o.optim = em_optim_defaults(EM_OPTIM_SGD);
    o.seed = 0;
    o.shuffle = true;
    o.progress = EM_PROGRESS_AUTO;
    o.schedule = em_schedule_defaults(EM_SCHEDULE_CONSTANT);
    return o;
}

/* "sgd lr 0.05, momentum 0.9" for the plot's title. */
static void describe_optimizer(char *buf, size_t cap, const em_train_opts *o)
{
    const em_optim_opts *p = &o->optim;
    int n = snprintf(buf, cap, "%s lr %g", em_optim_name(o->optimizer), (double)p->lr);
    if (n < 0 || (size_t)n >= cap)
        return;
    if (o->optimizer == EM_OPTIM_SGD) {
        if (p->momentum != 0.0f)
            n += snprintf(buf + n, cap - (size_t)n, ", momentum %g%s", (double)p->momentum,
                          p->nesterov ? " (nesterov)" : "");
        if (p->dampening != 0.0f && (size_t)n < cap)
            n += snprintf(buf + n, cap - (size_t)n, ", dampening %g", (double)p->dampening);
    } else if (o->optimizer == EM_OPTIM_ADAM || o->optimizer == EM_OPTIM_ADAMW) {
        n += snprintf(buf + n, cap - (size_t)n, ", betas %g/%g%s", (double)p->beta1, (double)p->beta2,
                      p->amsgrad ? ", amsgrad" : "");
    } else if (o->optimizer == EM_OPTIM_RMSPROP) {
        n += snprintf(buf + n, cap - (size_t)n, ", alpha %g%s", (double)p->alpha, p->centered ? ", centered" : "");
        if (p->momentum != 0.0f && n >= 0 && (size_t)n < cap)
            n += snprintf(buf + n, cap - (size_t)n, ", momentum %g", (double)p->momentum);
    } else if (o->optimizer == EM_OPTIM_ADAGRAD && p->lr_decay != 0.0f) {
        n += snprintf(buf + n, cap - (size_t)n, ", lr decay %g", (double)p->lr_decay);
    }
    if (o->schedule.kind != EM_SCHEDULE_CONSTANT && n >= 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, ", %s schedule", em_schedule_name(o->schedule.kind));
    if (p->weight_decay != 0.0f && n >= 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, ", weight decay %g", (double)p->weight_decay);
    if (o->n_param_groups > 0 && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, " (+%d parameter group%s)", o->n_param_groups,
                 o->n_param_groups == 1 ? "" : "s");
}

/* The model description on one line: "input 784 > linear 512 > relu > ...". */
static void describe_model(char *buf, size_t cap, const em_model *m)
{
    buf[0] = '\0';
    const char *text = em_model_description(m);
    size_t used = 0;
    while (text && *text && used + 1 < cap) {
        const char *end = strchr(text, '\n');
        size_t len = end ? (size_t)(end - text) : strlen(text);
        size_t start = 0;
        while (start < len && (text[start] == ' ' || text[start] == '\t'))
            start++;
        size_t stop = len;
        const char *hash = memchr(text + start, '#', len - start);
        if (hash)
            stop = (size_t)(hash - text);
        while (stop > start && (text[stop - 1] == ' ' || text[stop - 1] == '\t' || text[stop - 1] == '\r'))
            stop--;
        if (stop > start) {
            if (used && used + 3 < cap) {
                memcpy(buf + used, " > ", 3);
                used += 3;
            }
            /* Runs of blanks (column alignment in the file) become one space. */
            for (size_t i = start; i < stop && used + 1 < cap; i++) {
                bool blank = text[i] == ' ' || text[i] == '\t';
                if (blank && i > start && (text[i - 1] == ' ' || text[i - 1] == '\t'))
                    continue;
                buf[used++] = blank ? ' ' : text[i];
            }
            buf[used] = '\0';
            if (used + 1 >= cap) {
                if (cap > 4)
                    memcpy(buf + cap - 4, "...", 4);
                return;
            }
        }
        text = end ? end + 1 : NULL;
    }
}

typedef struct run {
    em_model *m;
    const em_dataset *train, *test;
    em_train_opts o;
    em_optim *opt;
    em_loader *loader;
    em_metrics *metrics;
    em_progress progress;
    int64_t batches;
    int64_t steps;
    int epochs_run;
    double start;
    /* Checkpoints, resuming and stopping. */
    int first_epoch;
    bool loader_ready;       /* the loader stands where the next epoch starts or resumes */
    bool resume_mid_epoch;   /* the first epoch continues from `resume` */
    em_train_position resume;
    bool interrupted;
    int checkpoints;
    /* Unfreezing: the names of the parameters frozen at the start, '|'-separated. */
    char *frozen_pattern;
    bool unfrozen;
    /* Norms, clipping, schedule, validation, early stopping, history (monitor.c). */
    em_monitor mon;
    em_dataset *train_part, *val_part; /* a validation split's views */
} run;

/* A stop request, or the step budget spent: either ends the run as Ctrl-C does. */
static bool stop_requested(const run *r)
{
    return (r->o.stop_requested && *r->o.stop_requested) || (r->o.max_steps > 0 && r->steps >= r->o.max_steps);
}

/* Where a stop writes its checkpoint. */
static const char *stop_path(const run *r)
{
    return r->o.checkpoint_path ? r->o.checkpoint_path : r->o.interrupt_path;
}

/* Values in the early-stopping copy of the weights: every state tensor, back to back. */
static int64_t best_weights_numel(const run *r)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(r->m, &count);
    int64_t total = 0;
    for (int i = 0; i < count; i++)
        total += state[i].tensor->numel;
    return total;
}

/* After em_monitor_start: the schedule, early stopping and the epoch's figures as the
 * checkpoint left them. */
static int resume_monitor(run *r)
{
    em_monitor *mon = &r->mon;
    const em_train_position *pos = &r->resume;
    if (mon->schedule && pos->schedule[0]) {
        if (em_schedule_load_state(mon->schedule, pos->schedule) != EM_OK)
            return em_error_prefix("%s: ", r->o.resume_path);
    } else {
        /* A checkpoint without schedule state: replay the ticks from the base rates. */
        em_monitor_resume(mon, r->steps, r->first_epoch - 1);
    }
    /* The records of the steps and epochs before the checkpoint, for the plot and the
     * metrics file. */
    if (em_monitor_restore_history(mon, r->o.resume_path, r->steps) != EM_OK)
        return EM_ERR;
    mon->best_val = pos->best_val;
    mon->best_epoch = pos->best_epoch;
    mon->since_best = pos->since_best;
    if (r->resume_mid_epoch) {
        mon->correct = pos->epoch_correct;
        mon->seen = pos->epoch_seen;
        mon->grad_norms = pos->epoch_grad_norms;
        mon->grad_norm_sum = pos->epoch_grad_norm_sum;
    }
    if (mon->best_weights && mon->best_epoch > 0) {
        em_st_file *f = em_st_open(r->o.resume_path);
        int64_t n = best_weights_numel(r);
        em_tensor *dst = f ? em_tensor_wrap(em_step_arena(), 1, &n, mon->best_weights) : NULL;
        int rc = dst && em_st_load_into(f, "train.best_weights", dst) == EM_OK ? EM_OK : EM_ERR;
        em_st_close(f);
        em_step_end();
        if (rc != EM_OK)
            return em_error_prefix("%s: the best epoch's weights for early stopping: ", r->o.resume_path);
    }
    return EM_OK;
}

/* Writes the full checkpoint. Mid-epoch, the position is the loader's and the epoch's
 * sums so far; after a finished epoch it is the start of the next one, whose order the
 * loader's generator (as it is now) will draw. */
static int write_checkpoint(run *r, const char *path, int epoch, double loss_sum, int64_t items, bool epoch_done)
{
    em_train_position pos;
    memset(&pos, 0, sizeof pos);
    pos.step = r->steps;
    pos.batch_size = r->o.batch_size;
    pos.train_count = r->train->count;
    pos.shuffle = r->o.shuffle;
    if (epoch_done) {
        pos.epoch = epoch + 1;
        pos.loader.epoch_rng = *em_loader_rng(r->loader);
    } else {
        pos.epoch = epoch;
        pos.loader = em_loader_tell(r->loader);
        pos.epoch_loss_sum = loss_sum;
        pos.epoch_items = items;
    }
    /* What the monitor carries: the schedule, early stopping and the epoch's figures. */
    const em_monitor *mon = &r->mon;
    if (mon->schedule && em_schedule_save_state(mon->schedule, pos.schedule, sizeof pos.schedule) != EM_OK)
        return em_error_prefix("checkpoint after step %lld: ", (long long)r->steps);
    pos.best_val = mon->best_val;
    pos.best_epoch = mon->best_epoch;
    pos.since_best = mon->since_best;
    if (!epoch_done) {
        pos.epoch_correct = mon->correct;
        pos.epoch_seen = mon->seen;
        pos.epoch_grad_norms = mon->grad_norms;
        pos.epoch_grad_norm_sum = mon->grad_norm_sum;
    }
    em_named_tensor best = {"train.best_weights", NULL, true};
    int64_t n_best = best_weights_numel(r);
    if (mon->best_weights && mon->best_epoch > 0)
        best.tensor = em_tensor_wrap(em_step_arena(), 1, &n_best, mon->best_weights);
    em_train_history history;
    em_monitor_run_history(mon, &history);
    int rc = em_checkpoint_save_with_history(path, r->m, r->opt, &pos, &best, best.tensor ? 1 : 0, &history);
    em_step_end();
    if (rc != EM_OK)
        return em_error_prefix("checkpoint after step %lld: ", (long long)r->steps);
    r->checkpoints++;
    return EM_OK;
}

/* The parameters frozen at the start train again, in a group of their own with the
 * unfreezing learning rate; the optimizer is rebuilt over all trainable tensors and
 * the state of those it already had is carried over. */
static int unfreeze(run *r, int epoch)
{
    r->unfrozen = true;
    if (!r->frozen_pattern)
        return EM_OK;
    int n = em_model_unfreeze(r->m, r->frozen_pattern);
    if (n < 0)
        return em_error_prefix("unfreezing before epoch %d: ", epoch);
    /* The unfrozen tensors come first (they take precedence over the run's own
     * groups' patterns), then the run's own parameter groups. */
    int n_groups = r->o.n_param_groups + 1;
    em_param_group *groups = malloc((size_t)n_groups * sizeof *groups);
    /* The optimizer's group g + 1 continues the old one's group g, the unfrozen group
     * (1) is new: the schedule keeps each group's base rate and current factor. */
    int *from = malloc((size_t)(n_groups + 1) * sizeof *from);
    if (!groups || !from) {
        free(groups);
        free(from);
        return em_error("unfreezing before epoch %d: out of memory", epoch);
    }
    groups[0] = (em_param_group){.pattern = r->frozen_pattern, .set_lr = true, .lr = r->o.unfreeze_lr};
    for (int g = 1; g < n_groups; g++)
        groups[g] = r->o.param_groups[g - 1];
    from[0] = 0;
    from[1] = -1;
    for (int g = 2; g <= n_groups; g++)
        from[g] = g - 1;
    em_optim *opt = em_optim_new_grouped(r->m, r->o.optimizer, &r->o.optim, groups, n_groups);
    free(groups);
    if (!opt) {
        free(from);
        return em_error_prefix("unfreezing before epoch %d: ", epoch);
    }
    em_optim_copy_state(opt, r->opt);
    em_optim_free(r->opt);
    r->opt = opt;
    int rc = em_monitor_set_optimizer(&r->mon, opt, from);
    free(from);
    if (rc != EM_OK)
        return em_error_prefix("unfreezing before epoch %d: ", epoch);
    /* Their rate: the unfreezing rate, times the schedule's factor so far. */
    if (r->o.progress != EM_PROGRESS_QUIET)
        fprintf(r->o.log ? r->o.log : stderr, "epoch %d: %d frozen parameter tensors train from now on, lr %g\n",
                epoch, n, (double)em_optim_group_opts(opt, 1)->lr);
    return EM_OK;
}

/* Frozen parameters, for unfreezing later. */
static int note_frozen(run *r)
{
    int count = 0;
    const em_named_tensor *state = em_model_state(r->m, &count);
    size_t len = 0;
    for (int i = 0; i < count; i++)
        if (em_param_is_frozen(state[i].tensor))
            len += strlen(state[i].name) + 1;
    if (len == 0)
        return EM_OK;
    r->frozen_pattern = malloc(len);
    if (!r->frozen_pattern)
        return em_error("train: out of memory");
    r->frozen_pattern[0] = '\0';
    for (int i = 0; i < count; i++) {
        if (!em_param_is_frozen(state[i].tensor))
            continue;
        if (r->frozen_pattern[0])
            strcat(r->frozen_pattern, "|");
        strcat(r->frozen_pattern, state[i].name);
    }
    return EM_OK;
}

/* Restores model, optimizer, generators and data position from a full checkpoint. */
static int resume_from(run *r, const char *path)
{
    em_train_position pos;
    if (em_checkpoint_read_position(path, &pos) != EM_OK)
        return EM_ERR;
    if (pos.batch_size != r->o.batch_size || pos.train_count != r->train->count || pos.shuffle != r->o.shuffle)
        return em_error("%s was written training on %lld examples in batches of %lld%s; this run has %lld in "
                        "batches of %lld%s, so the data order could not continue: use the same data and "
                        "options to resume",
                        path, (long long)pos.train_count, (long long)pos.batch_size, pos.shuffle ? "" : " (no shuffling)",
                        (long long)r->train->count, (long long)r->o.batch_size, r->o.shuffle ? "" : " (no shuffling)");
    if (pos.epoch > r->o.epochs)
        return em_error("%s is at the start of epoch %d, past the %d epoch%s asked for: nothing left to train "
                        "(ask for more epochs)",
                        path, pos.epoch, r->o.epochs, r->o.epochs == 1 ? "" : "s");
    /* A checkpoint written after the unfreezing holds the rebuilt optimizer. */
    int ua = r->o.unfreeze_after;
    if (ua > 0 && (pos.epoch > ua + 1 || (pos.epoch == ua + 1 && pos.loader.batches_done > 0)) &&
        unfreeze(r, pos.epoch) != EM_OK)
        return EM_ERR;
    if (em_checkpoint_load(path, r->m, r->opt, &pos) != EM_OK)
        return EM_ERR;
    if (em_loader_seek(r->loader, &pos.loader) != EM_OK)
        return em_error_prefix("%s: ", path);
    r->resume = pos;
    r->steps = pos.step;
    r->first_epoch = pos.epoch;
    r->epochs_run = pos.epoch - 1;
    r->loader_ready = true;
    r->resume_mid_epoch = pos.loader.batches_done > 0;
    if (r->o.progress != EM_PROGRESS_QUIET)
        fprintf(r->o.log ? r->o.log : stderr, "resuming from %s: step %lld, epoch %d, %lld of its %lld batches done\n",
                path, (long long)pos.step, pos.epoch, (long long)pos.loader.batches_done, (long long)r->batches);
    return EM_OK;
}

static int write_plot(run *r)
{
    char title[256], optim[160], model[512], subtitle[768];
    describe_optimizer(optim, sizeof optim, &r->o);
    snprintf(title, sizeof title, "Training: %s, batch %lld", optim, (long long)r->o.batch_size);
    describe_model(model, sizeof model, r->m);
    snprintf(subtitle, sizeof subtitle, "model: %s   |   %lld training examples, %d epoch%s",
             model[0] ? model : "(unnamed)", (long long)r->train->count, r->epochs_run,
             r->epochs_run == 1 ? "" : "s");
    em_plot_data d = {.title = title, .subtitle = subtitle, .history = r->mon.history};
    return em_plot_training(r->o.plot_path, &d);
}

/* One epoch of training; EM_ERR naming the epoch and step on failure or divergence. */
static int train_epoch(run *r, int epoch, double *loss_sum_out, int64_t *items_out)
{
    em_model_set_training(r->m, true);
    if (!r->loader_ready)
        em_loader_reset(r->loader);
    r->loader_ready = false;
    em_progress_epoch_begin(&r->progress, epoch);
    double loss_sum = 0.0;
    int64_t items = 0, done = 0;
    if (r->resume_mid_epoch) {
        loss_sum = r->resume.epoch_loss_sum;
        items = r->resume.epoch_items;
        done = r->resume.loader.batches_done;
        r->resume_mid_epoch = false;
    }
    em_batch b;
    while (em_loader_next(r->loader, &b)) {
        int64_t step = r->steps + 1;
        em_tensor *logits = em_forward(r->m, em_train_model_input(r->m, b.x));
        em_tensor *loss = em_cross_entropy(logits, b.y, 0.0f);
        if (!loss) {
            em_step_end();
            return em_error_prefix("epoch %d, step %lld: ", epoch, (long long)step);
        }
        float value = em_item(loss);
        if (!isfinite(value)) {
            em_monitor_diverged(&r->mon, step, epoch, value);
            r->steps++;
            em_divergence_error(r->m, epoch, step, b.index + 1, r->batches, value, NAN, em_optim_lr(r->opt));
            em_step_end();
            return EM_ERR;
        }
        if (em_backward(loss) != EM_OK) {
            em_step_end();
            return em_error_prefix("epoch %d, step %lld: ", epoch, (long long)step);
        }
        em_monitor_gradients(&r->mon, logits, b.y, b.n);
        /* The cheap guard: a non-finite gradient stops the run before the update, so
         * that the weights stay the last good ones. */
        if (em_gradients_non_finite(r->m, r->mon.step_grad_norm)) {
            double norm = r->mon.step_grad_norm;
            em_monitor_diverged(&r->mon, step, epoch, value);
            r->steps++;
            em_divergence_error(r->m, epoch, step, b.index + 1, r->batches, value, norm, em_optim_lr(r->opt));
            em_step_end();
            return EM_ERR;
        }
        em_optim_step(r->opt);
        r->steps++;
        done++;
        items += b.n;
        loss_sum += value;
        em_monitor_step(&r->mon, step, epoch, value);
        em_progress_step(&r->progress, done, items, loss_sum / (double)done);
        bool due = r->o.checkpoint_path && r->o.checkpoint_every > 0 && r->steps % r->o.checkpoint_every == 0;
        if (due && write_checkpoint(r, r->o.checkpoint_path, epoch, loss_sum, items, false) != EM_OK)
            return EM_ERR;
        if (stop_requested(r) && !due && stop_path(r) &&
            write_checkpoint(r, stop_path(r), epoch, loss_sum, items, false) != EM_OK)
            return EM_ERR;
        if (stop_requested(r)) {
            r->interrupted = true;
            return EM_OK;
        }
    }
    if (done != r->batches)
        return em_error("epoch %d: read %lld of %lld batches of %s (%s)", epoch, (long long)done,
                        (long long)r->batches, r->train->source, ember_last_error());
    *loss_sum_out = loss_sum;
    *items_out = items;
    return EM_OK;
}

static int train_all(run *r, em_train_result *result)
{
    for (int epoch = r->first_epoch; epoch <= r->o.epochs; epoch++) {
        double t0 = em_now(), loss_sum = 0.0;
        int64_t items = 0;
        if (r->o.unfreeze_after > 0 && epoch == r->o.unfreeze_after + 1 && !r->unfrozen && unfreeze(r, epoch) != EM_OK)
            return EM_ERR;
        if (train_epoch(r, epoch, &loss_sum, &items) != EM_OK)
            return EM_ERR;
        if (r->interrupted)
            return EM_OK;
        em_epoch_stats s;
        s.epoch = epoch;
        s.seconds = em_now() - t0;
        s.train_loss = loss_sum / (double)r->batches;
        s.samples_per_second = s.seconds > 0.0 ? (double)items / s.seconds : 0.0;
        s.test_loss = NAN;
        s.test_accuracy = NAN;
        if (r->test && em_evaluate(r->m, r->test, r->o.eval_batch_size, &s.test_loss, &s.test_accuracy) != EM_OK)
            return em_error_prefix("after epoch %d: ", epoch);
        r->epochs_run = epoch;
        if (em_monitor_epoch_end(&r->mon, &s, r->steps) != EM_OK)
            return EM_ERR;
        em_progress_epoch_end(&r->progress, &s, r->test != NULL);
        if (result) {
            result->epochs_run = epoch;
            result->last = s;
            result->steps = r->steps;
            result->total_seconds = em_now() - r->start;
        }
        bool last = epoch == r->o.epochs || r->mon.stop;
        const char *path = last ? r->o.checkpoint_path : stop_requested(r) ? stop_path(r) : NULL;
        if (path && write_checkpoint(r, path, epoch, 0.0, 0, true) != EM_OK)
            return EM_ERR;
        if (r->mon.stop)
            return EM_OK;
        if (stop_requested(r) && epoch < r->o.epochs) {
            r->interrupted = true;
            return EM_OK;
        }
    }
    return EM_OK;
}

static int check_options(const em_model *m, const em_dataset *train, const em_dataset *test,
                         const em_train_opts *o)
{
    if (!m)
        return em_error("train: no model (an earlier step failed: %s)", ember_last_error());
    if (!train)
        return em_error("train: no training set");
    if (o->epochs < 1)
        return em_error("train: epochs must be at least 1, got %d", o->epochs);
    if (o->batch_size < 1)
        return em_error("train: the batch size must be at least 1, got %lld", (long long)o->batch_size);
    if (o->eval_batch_size < 0)
        return em_error("train: the evaluation batch size must be >= 0 (0 picks one), got %lld",
                        (long long)o->eval_batch_size);
    if (em_train_check_fit(m, train) != EM_OK)
        return em_error_prefix("train: ");
    if (test && em_train_check_fit(m, test) != EM_OK)
        return em_error_prefix("train, test set: ");
    if (o->validation && em_train_check_fit(m, o->validation) != EM_OK)
        return em_error_prefix("train, validation set: ");
    if (o->val_split != 0.0 && (o->validation || !(o->val_split > 0.0 && o->val_split < 1.0)))
        return em_error("train: the validation split must be between 0 and 1 (exclusive) and excludes a "
                        "validation dataset, got %g%s",
                        o->val_split, o->validation ? " with a validation dataset" : "");
    if (o->n_param_groups < 0 || (o->n_param_groups > 0 && !o->param_groups))
        return em_error("train: %d parameter groups without a list", o->n_param_groups);
    return EM_OK;
}

int em_train(em_model *m, const em_dataset *train, const em_dataset *test, const em_train_opts *opts,
             em_train_result *result)
{
    run r;
    memset(&r, 0, sizeof r);
    r.o = opts ? *opts : em_train_defaults();
    if (result) {
        memset(result, 0, sizeof *result);
        result->last.test_loss = result->last.test_accuracy = NAN;
    }
    if (check_options(m, train, test, &r.o) != EM_OK)
        return EM_ERR;
    r.m = m;
    r.test = test;
    r.start = em_now();
    r.train = train;
    r.first_epoch = 1;
    r.loader_ready = true; /* a new loader stands at the first epoch's start */
    if (r.o.unfreeze_after > 0 && note_frozen(&r) != EM_OK)
        return EM_ERR;

    /* A validation split: two views of the training data, seeded like the data order. */
    const em_dataset *val = r.o.validation;
    if (r.o.val_split > 0.0) {
        if (em_dataset_split(train, r.o.val_split, r.o.seed, &r.train_part, &r.val_part) != EM_OK) {
            free(r.frozen_pattern);
            return em_error_prefix("train: ");
        }
        train = r.train_part;
        val = r.val_part;
        r.train = train;
    }

    int rc = EM_ERR;
    r.opt = em_optim_new_grouped(m, r.o.optimizer, &r.o.optim, r.o.param_groups, r.o.n_param_groups);
    if (!r.opt) {
        em_error_prefix("train: ");
        goto done;
    }
    r.loader = em_loader_new(train, r.o.batch_size, r.o.shuffle, r.o.seed);
    if (!r.loader)
        goto done;
    r.batches = em_loader_batches(r.loader);
    if (r.o.resume_path && resume_from(&r, r.o.resume_path) != EM_OK)
        goto done;
    /* Everything the loop records (the history in the monitor) is allocated here,
     * before the first step; a resumed run's history starts with the records the
     * checkpoint carries. */
    if (r.o.metrics_path && !(r.metrics = em_metrics_open(r.o.metrics_path)))
        goto done;
    if (em_monitor_start(&r.mon, m, r.opt, &r.o, val, r.metrics, r.batches, r.start) != EM_OK)
        goto done;
    if (r.o.resume_path && resume_monitor(&r) != EM_OK)
        goto done;
    em_progress_init(&r.progress, r.o.log, r.o.progress, r.o.epochs, r.batches, train->count);

    bool grad_was = em_set_grad_enabled(true);
    rc = train_all(&r, result);
    em_set_grad_enabled(grad_was);
    em_progress_interrupt(&r.progress);
    /* The best epoch's weights, before they are saved. */
    em_monitor_finish(&r.mon, result);
    if (result) {
        result->steps = r.steps;
        result->interrupted = r.interrupted;
        result->checkpoints_written = r.checkpoints;
    }

    /* The metrics and the plot are written even after a divergence (they show it);
     * the checkpoint only after a complete run. The first error is the one reported. */
    char first_error[1024];
    snprintf(first_error, sizeof first_error, "%s", ember_last_error());
    int finish = em_metrics_close(r.metrics);
    r.metrics = NULL;
    if (finish == EM_OK && r.o.plot_path && r.steps > 0)
        finish = write_plot(&r);
    if (finish == EM_OK && rc == EM_OK && r.o.save_path)
        finish = em_save_weights(m, r.o.save_path);
    if (rc != EM_OK)
        em_error("%s", first_error);
    else
        rc = finish;

done:
    if (result)
        result->total_seconds = em_now() - r.start;
    em_metrics_close(r.metrics);
    em_loader_free(r.loader);
    em_optim_free(r.opt);
    free(r.frozen_pattern);
    em_monitor_free(&r.mon);
    em_dataset_free(r.train_part);
    em_dataset_free(r.val_part);
    return rc;
}
