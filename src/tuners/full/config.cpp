#include "peft/tuners/full/config.h"

#include "peft/core/check.h"

namespace peft {

FullConfig FullConfig::from_json(const nlohmann::json& j, const std::string& source) {
  PEFT_CHECK(j.is_object(), ConfigError, "[config] ", source, ": expected a JSON object");
  FullConfig c;
  nlohmann::json rest = j;
  detail::read_base_fields(c, rest, source);
  c.peft_type = PeftType::Full;
  c.unknown = rest;
  return c;
}

}  // namespace peft
