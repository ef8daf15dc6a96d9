#include "config.h"
#include "redis/url.h"

#include <string>

#include "gtest/gtest.h"

namespace ratetrack {
namespace {

// The status message of a configuration that must be refused.
std::string Refusal(const char* json) {
  auto c = ParseConfig(json);
  if (c.ok()) {
    auto e = EffectiveConfig::From(*c);
    if (e.ok()) return "(accepted)";
    EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
    return std::string(e.status().message());
  }
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  return std::string(c.status().message());
}

TEST(ConfigTest, EmptyAndFullConfigurationsParse) {
  EXPECT_TRUE(ParseConfig(nullptr).ok());
  EXPECT_TRUE(ParseConfig("").ok());
  EXPECT_TRUE(ParseConfig("{}").ok());
  auto c = ParseConfig(R"({
    "tier": "tier1", "backend": "memory", "builtin_tiers": true,
    "limits": {
      "openai/gpt-4o-mini": {"rpm": 500, "tpm": 200000, "rpd": 10000, "tpd": null},
      "openai/*": {"rpm": 100},
      "acme/model": {"windows": [{"unit": "requests", "limit": 10, "seconds": 2},
                                 {"unit": "tokens", "limit": 5000, "seconds": 60}]}}})");
  ASSERT_TRUE(c.ok()) << c.status();
  auto e = EffectiveConfig::From(*c);
  ASSERT_TRUE(e.ok());
  ModelLimits acme = e->Resolve("acme/model");
  ASSERT_EQ(acme.windows.size(), 5u);  // four built-in + the 2 s window
  EXPECT_EQ(acme.windows[1].limit, 5000u) << "a 60 s token window is the tpm";
  EXPECT_EQ(acme.windows[4].seconds, 2);
  EXPECT_EQ(e->Resolve("openai/gpt-4o-mini").windows[3].limit, kUnlimited);
  EXPECT_EQ(e->Resolve("openai/unknown-model").windows[0].limit, 100u);
  EXPECT_EQ(e->Resolve("openai/gpt-4o").windows[0].limit, 500u) << "built-in beats wildcard";
  EXPECT_EQ(e->Resolve("nobody/m").windows[0].limit, kUnlimited);
  EXPECT_EQ(e->Resolve("no-provider").windows[0].limit, kUnlimited);
}

TEST(ConfigTest, ErrorsNameTheOffendingKey) {
  struct Case {
    const char* json;
    const char* must_mention;
  } cases[] = {
      {"not json", "not valid JSON"},
      {"[1, 2]", "JSON object"},
      {R"({"tier": 3})", "'tier'"},
      {R"({"tier": "tier9"})", "tier9"},
      {R"({"tier": ""})", "empty"},
      {R"({"tier": "openai=tier9"})", "tier9"},
      {R"({"tier": "nobody=tier1"})", "nobody"},
      {R"({"tier": "openai"})", "unknown tier 'openai'"},
      {R"({"tier": "openai=tier2,gemini"})", "'gemini'"},
      {R"({"backend": "redis://h:99999"})", "port"},
      {R"({"backend": "redis://h:6379/x"})", "database"},
      {R"({"backend": "redis://h?on_error=maybe"})", "on_error"},
      {R"({"backend": "redis://h?timeout_ms=0"})", "timeout_ms"},
      {R"({"backend": "redis://h?prefix={x}"})", "prefix"},
      {R"({"backend": "redis://h?colour=red"})", "colour"},
      {R"({"backend": "redis://"})", "no host"},
      {R"({"backend": "carrier-pigeon"})", "'backend'"},
      {R"({"backend": "shm:../x"})", "'backend'"},
      {R"({"backend": "shm:a/b"})", "no '/'"},
      {R"({"backend": "shm:"})", "'backend'"},
      {R"({"backend": "shm:.hidden"})", "'backend'"},
      {R"({"shm_models": 0})", "'shm_models'"},
      {R"({"shm_models": -5})", "'shm_models'"},
      {R"({"shm_mode": "0777"})", "'shm_mode'"},
      {R"({"shm_mode": 384})", "'shm_mode'"},
      {R"({"shm_limits": "merge"})", "'shm_limits'"},
      {R"({"builtin_tiers": "yes"})", "'builtin_tiers'"},
      {R"({"limit": {}})", "unknown config key 'limit'"},
      {R"({"limits": []})", "'limits'"},
      {R"({"limits": {"": {"rpm": 1}}})", "empty"},
      {R"({"limits": {"a/b": 5}})", "'limits.a/b'"},
      {R"({"limits": {"a/b": {"rpm": -1}}})", "'limits.a/b.rpm'"},
      {R"({"limits": {"a/b": {"tpm": 1.5}}})", "'limits.a/b.tpm'"},
      {R"({"limits": {"a/b": {"tpd": "many"}}})", "'limits.a/b.tpd'"},
      {R"({"limits": {"a/b": {"rpm": 18446744073709551615}}})", "null for unlimited"},
      {R"({"limits": {"a/b": {"rph": 1}}})", "'limits.a/b.rph'"},
      {R"({"limits": {"a/b": {"xtpm": 1}}})", "'limits.a/b.xtpm'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "requests", "limit": 1, "calendar_day": "Mars/Olympus"}]}}})",
       "time zone"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "requests", "limit": 1, "seconds": 5, "calendar_day": "UTC"}]}}})",
       "exclude each other"},
      {R"({"limits": {"a/b": {"rpd_calendar": "UTC"}}})", "'limits.a/b.rpd_calendar'"},
      {R"({"limits": {"a/b": {"windows": {}}}})", "'limits.a/b.windows'"},
      {R"({"limits": {"a/b": {"windows": [3]}}})", "'limits.a/b.windows[0]'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "requests", "limit": 1}]}}})",
       "'limits.a/b.windows[0]'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "bytes", "limit": 1, "seconds": 1}]}}})",
       "'limits.a/b.windows[0].unit'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "tokens", "limit": 1, "seconds": 0}]}}})",
       "'limits.a/b.windows[0].seconds'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "tokens", "limit": 1, "seconds": 1.5}]}}})",
       "'limits.a/b.windows[0].seconds'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "tokens", "limit": 1, "seconds": 99999999}]}}})",
       "'limits.a/b.windows[0].seconds'"},
      {R"({"limits": {"a/b": {"windows": [{"unit": "tokens", "limit": 1, "seconds": 1, "x": 1}]}}})",
       "'limits.a/b.windows[0].x'"},
      {R"({"limits": {"a/b": {"rpm": 5, "windows": [{"unit": "requests", "limit": 1, "seconds": 60}]}}})",
       "defined twice"},
      {R"({"limits": {"a/*x": {"rpm": 1}}})", "wildcard"},
      {R"({"limits": {"*": {"rpm": 1}}})", "wildcard"},
  };
  for (const Case& c : cases) {
    std::string msg = Refusal(c.json);
    EXPECT_NE(msg.find(c.must_mention), std::string::npos)
        << c.json << " -> " << msg;
  }
}

TEST(ConfigTest, RedisUrlsParseAndNeverShowThePassword) {
  auto u = ParseRedisUrl("redis://app:hunter2@cache.local:6380/3?prefix=agents&timeout_ms=20&on_error=closed");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "cache.local");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 3);
  EXPECT_EQ(u->user, "app");
  EXPECT_EQ(u->password, "hunter2");
  EXPECT_EQ(u->prefix, "agents");
  EXPECT_EQ(u->timeout_ms, 20);
  EXPECT_EQ(u->on_error, RedisUrl::OnError::kClosed);
  EXPECT_EQ(u->Redacted().find("hunter2"), std::string::npos);
  EXPECT_EQ(u->Redacted().find("app"), std::string::npos);
  auto d = ParseRedisUrl("redis://127.0.0.1");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port, 6379);
  EXPECT_EQ(d->timeout_ms, 50);
  EXPECT_EQ(d->on_error, RedisUrl::OnError::kLocal);
  EXPECT_EQ(d->connections, 4);
  EXPECT_EQ(d->Redacted().find("connections"), std::string::npos) << d->Redacted();
  auto c = ParseRedisUrl("redis://h:1?connections=3");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->connections, 3);
  EXPECT_NE(c->Redacted().find("connections=3"), std::string::npos) << c->Redacted();
  for (const char* bad : {"redis://h:1?connections=0", "redis://h:1?connections=65",
                          "redis://h:1?connections=two"}) {
    auto r = ParseRedisUrl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(std::string(r.status().message()).find("connections"), std::string::npos)
        << r.status();
  }
  auto p = ParseRedisUrl("redis://secretonly@h:1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->password, "secretonly");
  for (const char* bad : {"redis://u:hunter2@h:99999", "redis://u:hunter2@h?x=1",
                          "redis://u:hunter2@:1", "rediss://u:hunter2@h?tls_insecure=maybe",
                          "redis://u:hunter2@h?tls_ca_file=/ca.pem",
                          "rediss://u:hunter2@h?tls_cert_file=/c.pem",
                          "rediss://u:hunter2@h?tls_colour=red"}) {
    std::string json = std::string(R"({"backend": ")") + bad + "\"}";
    std::string msg = Refusal(json.c_str());
    EXPECT_EQ(msg.find("hunter2"), std::string::npos) << msg;
    EXPECT_NE(msg, "(accepted)") << bad;
  }
}

TEST(ConfigTest, RedisUnixSocketUrls) {
  auto a = ParseRedisUrl(
      "redis+unix:///run/redis/redis.sock?db=2&password=hunter2&prefix=p&timeout_ms=70"
      "&on_error=closed&connections=3");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->unix_path, "/run/redis/redis.sock");
  EXPECT_EQ(a->db, 2);
  EXPECT_EQ(a->password, "hunter2");
  EXPECT_EQ(a->prefix, "p");
  EXPECT_EQ(a->timeout_ms, 70);
  EXPECT_EQ(a->on_error, RedisUrl::OnError::kClosed);
  EXPECT_EQ(a->connections, 3);
  EXPECT_EQ(a->Redacted(),
            "redis+unix:///run/redis/redis.sock?db=2&prefix=p&timeout_ms=70&on_error=closed"
            "&connections=3");
  auto again = ParseRedisUrl(a->Redacted());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->unix_path, a->unix_path);
  EXPECT_EQ(again->db, 2);
  auto b = ParseRedisUrl("unix://agent:p%40ss@/tmp/r%40dis.sock");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->unix_path, "/tmp/r@dis.sock");
  EXPECT_EQ(b->user, "agent");
  EXPECT_EQ(b->password, "p@ss");
  EXPECT_EQ(b->db, 0);
  EXPECT_EQ(b->Redacted().find("p@ss"), std::string::npos);
  for (const char* bad : {"redis+unix://", "redis+unix://relative.sock", "unix://u:hunter2@",
                          "redis+unix:///tmp/r.sock?db=x", "redis+unix:///tmp/r.sock?db=-1",
                          "unix:///tmp/r.sock?password=hunter2&colour=red",
                          "redis+unix:///tmp/r.sock?password=hunter2&on_error=never"}) {
    std::string json = std::string(R"({"backend": ")") + bad + "\"}";
    std::string msg = Refusal(json.c_str());
    EXPECT_NE(msg, "(accepted)") << bad;
    EXPECT_EQ(msg.find("hunter2"), std::string::npos) << msg;
  }
  std::string longest = "redis+unix:///" + std::string(107, 'x');
  EXPECT_FALSE(ParseRedisUrl(longest).ok());
  EXPECT_TRUE(ParseRedisUrl(longest.substr(0, longest.size() - 1)).ok());
}

TEST(ConfigTest, RedisSentinelUrls) {
  auto a = ParseRedisUrl(
      "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2,s3.local:26380/mymaster?db=2"
      "&sentinel_password=spw&sentinel_user=su&on_error=closed");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->sentinels.size(), 3u);
  EXPECT_EQ(a->sentinels[1].first, "10.0.0.2");
  EXPECT_EQ(a->sentinels[1].second, 26379);
  EXPECT_EQ(a->sentinels[2].second, 26380);
  EXPECT_EQ(a->sentinel_service, "mymaster");
  EXPECT_EQ(a->sentinel_password, "spw");
  EXPECT_EQ(a->sentinel_user, "su");
  EXPECT_EQ(a->password, "pw");
  EXPECT_EQ(a->db, 2);
  const std::string shown = a->Redacted();
  EXPECT_EQ(shown.rfind("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,s3.local:26380/mymaster?db=2",
                        0),
            0u)
      << shown;
  EXPECT_EQ(shown.find("spw"), std::string::npos);
  EXPECT_EQ(shown.find("pw@"), std::string::npos);
  auto again = ParseRedisUrl(shown);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->sentinels, a->sentinels);
  for (const char* bad : {"redis+sentinel://h:1", "redis+sentinel://h:1/", "redis+sentinel:///svc",
                          "redis+sentinel://h:x/svc", "redis://h:1?sentinel_password=hunter2",
                          "redis+sentinel://h:1/a/b"}) {
    EXPECT_FALSE(ParseRedisUrl(bad).ok()) << bad;
  }
}

TEST(ConfigTest, RedisTlsUrls) {
  auto a = ParseRedisUrl(
      "rediss://:pw@cache.example:6380/1?tls_ca_file=/etc/ca%20files/ca.pem&tls_ca_dir=/etc/ssl/certs"
      "&tls_cert_file=/c.pem&tls_key_file=/c.key&tls_server_name=redis.internal");
#ifdef RATETRACK_TLS
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->tls.enabled);
  EXPECT_EQ(a->tls.ca_file, "/etc/ca files/ca.pem");
  EXPECT_EQ(a->tls.ca_dir, "/etc/ssl/certs");
  EXPECT_EQ(a->tls.cert_file, "/c.pem");
  EXPECT_EQ(a->tls.key_file, "/c.key");
  EXPECT_EQ(a->tls.server_name, "redis.internal");
  EXPECT_FALSE(a->tls.insecure);
  EXPECT_EQ(a->Redacted().rfind("rediss://cache.example:6380/1?", 0), 0u) << a->Redacted();
  auto b = ParseRedisUrl("rediss://h:1?tls_insecure=yes");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->tls.insecure);
  EXPECT_NE(b->Redacted().find("tls_insecure=yes"), std::string::npos);
  EXPECT_FALSE(ParseRedisUrl("redis://h:1").value().tls.enabled);
#else
  ASSERT_FALSE(a.ok());
  EXPECT_NE(std::string(a.status().message()).find("no TLS"), std::string::npos) << a.status();
#endif
}

// A password written by hand may hold '?', '/', ':' or '#': the credentials
// run to the last '@', and no part of them reaches a message or a field,
// whatever else in the URL is wrong.
TEST(ConfigTest, RedisPasswordsWithUrlCharactersStaySecret) {
  auto a = ParseRedisUrl("redis://default:Xk9?m2Zq@127.0.0.1:6379");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->user, "default");
  EXPECT_EQ(a->password, "Xk9?m2Zq");
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 6379);
  auto b = ParseRedisUrl("redis://pw?prefix=x@cache:7000");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->host, "cache");
  EXPECT_EQ(b->password, "pw?prefix=x");
  EXPECT_EQ(b->Redacted().find("pw"), std::string::npos) << b->Redacted();
  auto c = ParseRedisUrl("redis://u:p%40ss%2Fw%zz@h:1/2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->password, "p@ss/w%zz");
  EXPECT_EQ(c->db, 2);
  // Malformed after the credentials: the message names the bad part only.
  for (const char* bad :
       {"redis://default:Xk9?m2Zq@127.0.0.1:bad", "redis://u:Qz7/Wv4@h:1/notadb",
        "redis://u:Qz7:Wv4?Jy2@h?colour=red", "redis://:Qz7#Wv4@Jy2@:1", "redis://u:Qz7?Wv4@",
        "redis://Qz7:Wv4@h:0", "redis://u:Qz7?Wv4@h?on_error=never"}) {
    std::string json = std::string(R"({"backend": ")") + bad + "\"}";
    std::string msg = Refusal(json.c_str());
    EXPECT_NE(msg, "(accepted)") << bad;
    for (const char* piece : {"Qz7", "Wv4", "Jy2", "Xk9", "m2Zq"}) {
      EXPECT_EQ(msg.find(piece), std::string::npos) << bad << " -> " << msg;
    }
  }
}

TEST(ConfigTest, AtMostEightExtraWindows) {
  std::string json = R"({"limits": {"a/b": {"windows": [)";
  for (int i = 1; i <= 9; ++i) {
    json += (i > 1 ? "," : "") + std::string(R"({"unit": "requests", "limit": 1, "seconds": )") +
            std::to_string(i) + "}";
  }
  json += "]}}}";
  EXPECT_NE(Refusal(json.c_str()).find("more than 8"), std::string::npos);
}

TEST(ConfigTest, TierSelection) {
  auto all = ParseTier("tier1");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->by_provider.at("openai"), "tier1");
  EXPECT_EQ(all->by_provider.at("anthropic"), "tier1");
  EXPECT_EQ(all->by_provider.at("gemini"), "tier1");
  auto free_tier = ParseTier("free");
  ASSERT_TRUE(free_tier.ok());
  EXPECT_EQ(free_tier->by_provider.count("anthropic"), 0u) << "anthropic has no free tier";
  auto per = ParseTier("openai=tier2, anthropic=tier1,gemini=paid");
  ASSERT_TRUE(per.ok()) << per.status();
  EXPECT_EQ(per->by_provider.at("openai"), "tier2");
  EXPECT_EQ(per->by_provider.at("gemini"), "tier1") << "alias";
  EXPECT_EQ(per->text, "openai=tier2, anthropic=tier1,gemini=paid");
}

// The seed's tables, as the issue requires them.
TEST(ConfigTest, BuiltinTablesCarryTheSeedNumbers) {
  struct Row {
    const char* tier;
    const char* model;
    uint64_t rpm, tpm, rpd;
  } rows[] = {
      {"tier1", "openai/gpt-4o", 500, 30000, 10000},
      {"tier1", "openai/gpt-4o-mini", 500, 200000, 10000},
      {"tier1", "openai/gpt-3.5-turbo", 500, 60000, 10000},
      {"tier1", "openai/gpt-4.1", 100, 100000, 1000},
      {"tier1", "openai/o1", 20, 100000, 500},
      {"tier1", "openai/o1-mini", 30, 150000, 1000},
      {"tier2", "openai/gpt-4o", 5000, 450000, 10000},
      {"tier2", "openai/gpt-4o-mini", 5000, 2000000, 10000},
      {"tier2", "openai/o1", 40, 200000, 1000},
      {"tier2", "openai/o1-mini", 60, 300000, 2000},
      {"free", "gemini/gemini-2.5-pro", 5, 250000, 100},
      {"free", "gemini/gemini-2.5-flash", 15, 1000000, 1500},
      {"free", "gemini/gemini-2.5-flash-lite", 15, 250000, 1000},
      {"free", "gemini/gemini-1.5-pro", 2, 32768, 50},
      {"free", "gemini/gemini-1.5-flash", 15, 1000000, 1500},
  };
  auto window = [](const ModelLimits& l, const std::string& name) {
    for (const WindowLimit& w : l.windows) {
      if (WindowName(w) == name) return w.limit;
    }
    return uint64_t{0};
  };
  for (const Row& r : rows) {
    Config c;
    c.tier = r.tier;
    auto e = EffectiveConfig::From(c);
    ASSERT_TRUE(e.ok());
    ModelLimits l = e->Resolve(r.model);
    // Gemini counts input tokens only, and its day ends at midnight Pacific.
    const bool gemini = std::string(r.model).rfind("gemini/", 0) == 0;
    EXPECT_EQ(window(l, "requests_per_minute"), r.rpm) << r.tier << " " << r.model;
    EXPECT_EQ(window(l, gemini ? "input_tokens_per_minute" : "tokens_per_minute"), r.tpm)
        << r.tier << " " << r.model;
    EXPECT_EQ(window(l, gemini ? "requests_per_calendar_day" : "requests_per_day"), r.rpd)
        << r.tier << " " << r.model;
  }
  // Anthropic's input/output split is enforced.
  Config anthropic;
  anthropic.tier = "anthropic=tier1";
  auto a = EffectiveConfig::From(anthropic);
  ASSERT_TRUE(a.ok());
  ModelLimits sonnet = a->Resolve("anthropic/claude-sonnet-4-20250514");
  EXPECT_EQ(window(sonnet, "input_tokens_per_minute"), 30000u);
  EXPECT_EQ(window(sonnet, "output_tokens_per_minute"), 8000u);
  // The seed's -1 ("unlimited") is null: paid Gemini 2.5 Pro has no token cap.
  Config paid;
  paid.tier = "gemini=paid";
  auto e = EffectiveConfig::From(paid);
  ASSERT_TRUE(e.ok());
  for (const WindowLimit& w : e->Resolve("gemini/gemini-2.5-pro").windows) {
    if (w.unit == Unit::kTokens || w.unit == Unit::kInputTokens) {
      EXPECT_EQ(w.limit, kUnlimited) << WindowName(w);
    }
  }
  EXPECT_NE(e->Resolve("gemini/gemini-2.5-pro").windows[0].limit, kUnlimited);
}

TEST(ConfigTest, BuiltinTiersOffIgnoresTheTables) {
  auto c = ParseConfig(R"({"builtin_tiers": false})");
  ASSERT_TRUE(c.ok());
  auto e = EffectiveConfig::From(*c);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->Resolve("openai/gpt-4o").windows[0].limit, kUnlimited);
  EXPECT_TRUE(e->ListedModels().empty());
}

TEST(ConfigTest, MergeReplacesPresentKeysOnly) {
  Config a = *ParseConfig(R"({"tier": "tier2", "limits": {"a/b": {"rpm": 1}}})");
  a.Merge(*ParseConfig(R"({"builtin_tiers": false})"));
  EXPECT_EQ(*a.tier, "tier2");
  EXPECT_FALSE(*a.builtin_tiers);
  a.Merge(*ParseConfig(R"({"limits": {"c/d": {"rpm": 2}}})"));
  EXPECT_EQ(a.limits->count("a/b"), 0u) << "limits replace as a whole";
  EXPECT_EQ(a.limits->count("c/d"), 1u);
}

}  // namespace
}  // namespace ratetrack
