/* Internal: replaces the thread's step arena, returning the previous one. The gradient
 * checker runs its many probe forwards in a scratch arena this way. */
#ifndef EMBER_STEP_ARENA_H
#define EMBER_STEP_ARENA_H

#include "ember/arena.h"

em_arena *em_swap_step_arena(em_arena *arena);

#endif
