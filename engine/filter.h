/* filter.h - record filters for the engine: the API is in the plugin interface
 * (engine/spi/sp_filter.h), which operators may include too. */
#ifndef SPATE_ENGINE_FILTER_H
#define SPATE_ENGINE_FILTER_H

#include "engine/spi/sp_filter.h"

#include <stdbool.h>

/* Whether some pattern names the records' headers ("headers" at the top level, or in a
 * top-level $or); false for NULL (no filter). */
bool sp_filter_uses_headers(const sp_filter_t *f);

#endif /* SPATE_ENGINE_FILTER_H */
