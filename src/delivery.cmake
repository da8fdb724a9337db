# Message templates and the delivery pipeline, on top of the Liquid engine (nudge_content), the
# email transport (nudge_channel) and the bounce parsers (nudge_feedback).
if(NOT TARGET nudge_feedback)
  add_subdirectory(channel/feedback)
endif()

add_library(nudge_templates STATIC content/template.cc content/text.cc content/library.cc)
target_link_libraries(nudge_templates PUBLIC nudge_content nudge_store nudge_core
                      PRIVATE cctz yaml-cpp nlohmann_json::nlohmann_json)
nudge_test(templates_test SOURCES content/template_test.cc content/text_test.cc
           LIBS nudge_templates)

add_library(nudge_delivery STATIC
  channel/channel.cc channel/http_pool.cc channel/sms/sms.cc channel/webhook/webhook.cc
  channel/email/email_channel.cc channel/channels_config.cc channel/delivery.cc
  channel/feedback_processor.cc)
target_link_libraries(nudge_delivery PUBLIC nudge_channel nudge_feedback nudge_templates
                      nudge_track nudge_journey nudge_segment nudge_profile
                      PRIVATE CURL::libcurl OpenSSL::Crypto yaml-cpp spdlog::spdlog
                      nlohmann_json::nlohmann_json)
nudge_test(delivery_test SOURCES channel/delivery_test.cc channel/webhook/webhook_test.cc
           LIBS nudge_delivery)

# Image templates of each workspace, with their assets, rendered for a contact (the /i/ route).
add_library(nudge_image_library STATIC content/image_library.cc)
target_link_libraries(nudge_image_library PUBLIC nudge_image nudge_templates nudge_store
                      PRIVATE spdlog::spdlog nlohmann_json::nlohmann_json)
