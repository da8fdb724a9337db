#include "channel/channel.h"

namespace nudge::channel {

Status ChannelRegistry::Add(std::unique_ptr<Channel> channel) {
  const std::string name(channel->name());
  if (channels_.count(name))
    return Status(Code::kAlreadyExists, "a channel named '" + name + "' is registered already");
  channels_.emplace(name, std::move(channel));
  return Status::Ok();
}

Channel* ChannelRegistry::Find(std::string_view name) const {
  auto it = channels_.find(name);
  return it == channels_.end() ? nullptr : it->second.get();
}

std::vector<std::string> ChannelRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, ch] : channels_) out.push_back(name);
  return out;
}

void ChannelRegistry::ShutdownAll(core::Millis drain) {
  for (auto& [name, ch] : channels_) ch->Shutdown(drain);
}

}  // namespace nudge::channel
