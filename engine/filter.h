/* filter.h - record filters for the engine: the API is in the plugin interface
 * (engine/spi/sp_filter.h), which operators may include too. */
#ifndef SPATE_ENGINE_FILTER_H
#define SPATE_ENGINE_FILTER_H

#include "engine/spi/sp_filter.h"

#endif /* SPATE_ENGINE_FILTER_H */
