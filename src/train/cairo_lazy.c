/* The cairo functions ember's plots use, loaded from libcairo.so.2 on first use instead
 * of being linked. Linking cairo makes every ember process map and relocate it and the
 * sixteen libraries it pulls in (fontconfig, freetype, pixman, X11, xcb, ...): about
 * 2.5 ms of a 5 ms `ember predict`, for plots that most commands never draw.
 *
 * Each function below has cairo's own prototype (from <cairo.h>) and forwards to the
 * real one. When the library cannot be loaded, the functions draw nothing: creators
 * return NULL, status queries an error, so em_plot_begin reports that the image could
 * not be made (and cairo_status_to_string says why). */
#include <cairo.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define CAIRO_LIBRARY "libcairo.so.2"

/* name, parameter list, argument list */
#define CAIRO_VOID_FUNCTIONS(X)                                                                           \
    X(cairo_arc, (cairo_t * cr, double xc, double yc, double radius, double angle1, double angle2),        \
      (cr, xc, yc, radius, angle1, angle2))                                                               \
    X(cairo_clip, (cairo_t * cr), (cr))                                                                    \
    X(cairo_destroy, (cairo_t * cr), (cr))                                                                 \
    X(cairo_fill, (cairo_t * cr), (cr))                                                                    \
    X(cairo_fill_preserve, (cairo_t * cr), (cr))                                                           \
    X(cairo_line_to, (cairo_t * cr, double x, double y), (cr, x, y))                                       \
    X(cairo_move_to, (cairo_t * cr, double x, double y), (cr, x, y))                                       \
    X(cairo_new_path, (cairo_t * cr), (cr))                                                                \
    X(cairo_paint, (cairo_t * cr), (cr))                                                                   \
    X(cairo_rectangle, (cairo_t * cr, double x, double y, double width, double height), (cr, x, y, width, height)) \
    X(cairo_restore, (cairo_t * cr), (cr))                                                                 \
    X(cairo_rotate, (cairo_t * cr, double angle), (cr, angle))                                             \
    X(cairo_save, (cairo_t * cr), (cr))                                                                    \
    X(cairo_select_font_face,                                                                              \
      (cairo_t * cr, const char *family, cairo_font_slant_t slant, cairo_font_weight_t weight),             \
      (cr, family, slant, weight))                                                                        \
    X(cairo_set_dash, (cairo_t * cr, const double *dashes, int num_dashes, double offset),                \
      (cr, dashes, num_dashes, offset))                                                                   \
    X(cairo_set_font_size, (cairo_t * cr, double size), (cr, size))                                        \
    X(cairo_set_line_join, (cairo_t * cr, cairo_line_join_t line_join), (cr, line_join))                   \
    X(cairo_set_line_width, (cairo_t * cr, double width), (cr, width))                                     \
    X(cairo_set_source_rgb, (cairo_t * cr, double red, double green, double blue), (cr, red, green, blue)) \
    X(cairo_set_source_rgba, (cairo_t * cr, double red, double green, double blue, double alpha),          \
      (cr, red, green, blue, alpha))                                                                      \
    X(cairo_show_text, (cairo_t * cr, const char *utf8), (cr, utf8))                                       \
    X(cairo_stroke, (cairo_t * cr), (cr))                                                                  \
    X(cairo_stroke_preserve, (cairo_t * cr), (cr))                                                         \
    X(cairo_surface_destroy, (cairo_surface_t * surface), (surface))                                       \
    X(cairo_text_path, (cairo_t * cr, const char *utf8), (cr, utf8))                                       \
    X(cairo_translate, (cairo_t * cr, double tx, double ty), (cr, tx, ty))

/* type, name, parameter list, argument list, value when cairo is missing */
#define CAIRO_VALUE_FUNCTIONS(X)                                                                          \
    X(cairo_t *, cairo_create, (cairo_surface_t * target), (target), NULL)                                 \
    X(cairo_surface_t *, cairo_get_target, (cairo_t * cr), (cr), NULL)                                     \
    X(cairo_surface_t *, cairo_image_surface_create, (cairo_format_t format, int width, int height),       \
      (format, width, height), NULL)                                                                      \
    X(cairo_status_t, cairo_surface_status, (cairo_surface_t * surface), (surface), CAIRO_STATUS_NULL_POINTER) \
    X(cairo_status_t, cairo_surface_write_to_png, (cairo_surface_t * surface, const char *filename),       \
      (surface, filename), CAIRO_STATUS_WRITE_ERROR)                                                      \
    X(const char *, cairo_status_to_string, (cairo_status_t status), (status),                             \
      "the plotting library " CAIRO_LIBRARY " could not be loaded")

/* Functions that fill out-parameters: zeros when cairo is missing. */
#define CAIRO_OUT_FUNCTIONS(X)                                                                            \
    X(cairo_text_extents, (cairo_t * cr, const char *utf8, cairo_text_extents_t *extents), (cr, utf8, extents), \
      memset(extents, 0, sizeof *extents))                                                                \
    X(cairo_get_current_point, (cairo_t * cr, double *x, double *y), (cr, x, y), (*x = 0, *y = 0))

#define POINTER_VOID(name, params, args) static void(*real_##name) params;
#define POINTER_VALUE(type, name, params, args, missing) static type(*real_##name) params;
#define POINTER_OUT(name, params, args, missing) static void(*real_##name) params;
CAIRO_VOID_FUNCTIONS(POINTER_VOID)
CAIRO_VALUE_FUNCTIONS(POINTER_VALUE)
CAIRO_OUT_FUNCTIONS(POINTER_OUT)

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static bool loaded;

/* Stores the address of `symbol` in *slot (a function pointer); false when absent. */
static bool resolve(void *library, const char *symbol, void *slot, size_t slot_size)
{
    void *address = dlsym(library, symbol);
    if (!address || slot_size != sizeof address)
        return false;
    memcpy(slot, &address, sizeof address);
    return true;
}

static void load_library(void)
{
    void *library = dlopen(CAIRO_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    if (!library)
        return;
#define RESOLVE_VOID(name, params, args) &&resolve(library, #name, &real_##name, sizeof real_##name)
#define RESOLVE_VALUE(type, name, params, args, missing) RESOLVE_VOID(name, params, args)
#define RESOLVE_OUT(name, params, args, missing) RESOLVE_VOID(name, params, args)
    loaded = true CAIRO_VOID_FUNCTIONS(RESOLVE_VOID) CAIRO_VALUE_FUNCTIONS(RESOLVE_VALUE)
        CAIRO_OUT_FUNCTIONS(RESOLVE_OUT);
}

static bool cairo_ready(void)
{
    pthread_once(&load_once, load_library);
    return loaded;
}

#define DEFINE_VOID(name, params, args)                                                                   \
    void name params                                                                                      \
    {                                                                                                     \
        if (cairo_ready())                                                                                \
            real_##name args;                                                                             \
    }
#define DEFINE_VALUE(type, name, params, args, missing)                                                   \
    type name params { return cairo_ready() ? real_##name args : (missing); }
#define DEFINE_OUT(name, params, args, missing)                                                           \
    void name params                                                                                      \
    {                                                                                                     \
        if (cairo_ready())                                                                                \
            real_##name args;                                                                             \
        else                                                                                              \
            missing;                                                                                      \
    }
CAIRO_VOID_FUNCTIONS(DEFINE_VOID)
CAIRO_VALUE_FUNCTIONS(DEFINE_VALUE)
CAIRO_OUT_FUNCTIONS(DEFINE_OUT)
