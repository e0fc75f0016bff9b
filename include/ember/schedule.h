/* Learning-rate schedules with PyTorch's semantics (torch.optim.lr_scheduler), acting on
 * every parameter group of an optimizer as PyTorch's schedulers do.
 *
 * A schedule advances by ticks, as a PyTorch scheduler advances by scheduler.step():
 * the learning rate of the first optimizer step is the schedule's value at tick 0, and
 * each em_schedule_step moves to the next tick. A tick is whatever the caller makes it:
 * em_train ticks after every epoch (PyTorch's usual place for StepLR, ExponentialLR and
 * ReduceLROnPlateau) or, with per_step, after every optimizer step (the usual place for
 * a warm-up). step_size, warmup and total count ticks in that unit, so a PyTorch loop
 * that calls scheduler.step() at the same place gives the same learning rates. */
#ifndef EMBER_SCHEDULE_H
#define EMBER_SCHEDULE_H

#include "ember/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_schedule_kind {
    EM_SCHEDULE_CONSTANT = 0, /* the optimizer's learning rates, unchanged */
    EM_SCHEDULE_STEP,         /* StepLR: lr * gamma^floor(t / step_size) */
    EM_SCHEDULE_EXPONENTIAL,  /* ExponentialLR: lr * gamma^t */
    /* Linear warm-up then cosine annealing: SequentialLR of LinearLR(warmup_start, 1,
     * total_iters=warmup) and CosineAnnealingLR(T_max=total - warmup, eta_min=min_lr)
     * with the milestone at warmup; without warm-up, CosineAnnealingLR(T_max=total). */
    EM_SCHEDULE_COSINE,
    EM_SCHEDULE_PLATEAU,      /* ReduceLROnPlateau on a metric given at each tick */
    EM_SCHEDULE_KIND_COUNT
} em_schedule_kind;

typedef struct em_schedule_opts {
    em_schedule_kind kind;
    bool per_step;        /* em_train: tick after every optimizer step, not every epoch */
    /* step, exponential */
    int64_t step_size;    /* ticks between two reductions (step) */
    double gamma;         /* factor per reduction */
    /* cosine */
    int64_t warmup;       /* ticks of linear warm-up (0: none) */
    double warmup_start;  /* the warm-up's first factor, in (0, 1] */
    int64_t total;        /* ticks of the whole schedule, warm-up included; em_train
                           * replaces 0 with the run's length */
    double min_lr;        /* cosine: eta_min; plateau: the floor of every group */
    /* plateau */
    double factor;        /* new lr = lr * factor */
    int patience;         /* ticks without improvement before a reduction */
    double threshold;     /* what counts as an improvement ... */
    bool threshold_abs;   /* ... relative (best * (1 - threshold)) or absolute */
    int cooldown;         /* ticks after a reduction during which bad ticks are not counted */
    double eps;           /* changes smaller than this are skipped */
    bool maximize;        /* the metric is better when larger (accuracy) */
} em_schedule_opts;

/* PyTorch's defaults (StepLR's step_size and ExponentialLR's gamma have none there:
 * here 1 and 0.9). Cosine: no warm-up, warmup_start 0.01, min_lr 0, per_step on.
 * Plateau: factor 0.1, patience 10, threshold 1e-4 relative, cooldown 0, eps 1e-8. */
em_schedule_opts em_schedule_defaults(em_schedule_kind kind);
/* "constant", "step", "exponential", "cosine", "plateau"; EM_ERR listing them. */
int em_schedule_parse(const char *name, em_schedule_kind *kind);
const char *em_schedule_name(em_schedule_kind kind);

typedef struct em_schedule em_schedule;

/* Takes each group's current learning rate as its base (PyTorch's initial_lr) and sets
 * the tick-0 rates. NULL + error naming the bad option. */
em_schedule *em_schedule_new(em_optim *opt, const em_schedule_opts *opts);
void em_schedule_free(em_schedule *s);
/* scheduler.step(): the next tick. A plateau schedule needs em_schedule_step_metric. */
void em_schedule_step(em_schedule *s);
/* ReduceLROnPlateau.step(metric); the other kinds ignore the metric. */
void em_schedule_step_metric(em_schedule *s, double metric);
int64_t em_schedule_ticks(const em_schedule *s);
/* Moves the schedule onto another optimizer over the same model (rebuilt with more
 * groups, say): group g of opt continues the schedule of the old optimizer's group
 * from[g] (its rate and base), or, when from[g] is -1, is a new group whose base is its
 * own rate and whose rate is what the schedule gives that base at the current tick
 * (a plateau schedule: the base times the default group's reduction so far, no lower
 * than min_lr). from may be NULL: group g continues group g, the groups past the old
 * count are new. EM_ERR (nothing changed) when from names a group the schedule does
 * not have, or when out of memory. */
int em_schedule_rebind_groups(em_schedule *s, em_optim *opt, const int *from);
/* em_schedule_rebind_groups(s, opt, NULL). */
int em_schedule_rebind(em_schedule *s, em_optim *opt);
/* Group g's learning rate at the current tick, in double as PyTorch keeps it. */
double em_schedule_lr(const em_schedule *s, int g);
const em_schedule_opts *em_schedule_options(const em_schedule *s);

/* For checkpoints: the schedule's state as text (tick count, base and current rates,
 * plateau counters; doubles in exact hexadecimal), EM_ERR if longer than size - 1. */
int em_schedule_save_state(const em_schedule *s, char *buf, size_t size);
/* Restores it into a schedule of the same kind over an optimizer with as many groups,
 * and sets the optimizer's rates; nothing changes on error. */
int em_schedule_load_state(em_schedule *s, const char *text);

#ifdef __cplusplus
}
#endif
#endif
