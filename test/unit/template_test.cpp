/* Unit tests: the trigger argument grammar, rendering and TRUNCATE forms. */
#include "core/template.hpp"

#include <gtest/gtest.h>

using namespace cachebust;

namespace {

std::string
error_of(const std::vector<std::string> &args)
{
	try {
		TriggerSpec::parse(args);
	} catch (const TargetError &e) {
		return e.what();
	}
	return "(no error)";
}

const KeyPrefixes no_prefix{"", "tag:"};

/* Renders target i of a spec from column values given in slot order. */
std::optional<Target>
render(const TriggerSpec &spec, size_t i, RowValues values, const KeyPrefixes &p = no_prefix)
{
	return spec.targets.at(i).render(p, values, spec.immediate);
}

} // namespace

TEST(TemplateParse, KindsAndDefaults)
{
	TriggerSpec spec = TriggerSpec::parse({"user:{id}", "key=k:{id}", "tag=team:{team_id}",
										   "pattern=search:*:{id}", "bump=ver"});
	ASSERT_EQ(spec.targets.size(), 5u);
	EXPECT_EQ(spec.targets[0].kind, TargetKind::Key);
	EXPECT_FALSE(spec.targets[0].glob);
	EXPECT_EQ(spec.targets[1].kind, TargetKind::Key);
	EXPECT_EQ(spec.targets[2].kind, TargetKind::Tag);
	EXPECT_EQ(spec.targets[3].kind, TargetKind::Key);
	EXPECT_TRUE(spec.targets[3].glob);
	EXPECT_EQ(spec.targets[4].kind, TargetKind::Bump);
	EXPECT_FALSE(spec.targets[4].has_columns());
	EXPECT_FALSE(spec.immediate);
	/* distinct columns, in first-reference order */
	EXPECT_EQ(spec.columns, (std::vector<std::string>{"id", "team_id"}));
	EXPECT_EQ(spec.targets[2].source, "tag=team:{team_id}");
}

TEST(TemplateParse, PriorityImmediateIsAnOption)
{
	TriggerSpec spec = TriggerSpec::parse({"a:{id}", "priority=immediate"});
	EXPECT_EQ(spec.targets.size(), 1u);
	EXPECT_TRUE(spec.immediate);
	EXPECT_TRUE(render(spec, 0, {"1"})->immediate);
	EXPECT_NE(error_of({"a", "priority=urgent"}).find("unknown priority \"urgent\""), std::string::npos);
	EXPECT_NE(error_of({"a", "priority=immediate", "priority=immediate"}).find("more than once"),
			  std::string::npos);
}

TEST(TemplateParse, RefreshOptionBindsTheKeyTemplatesColumns)
{
	TriggerSpec spec = TriggerSpec::parse({"tag=team:{team}", "u:{b}:{a}:{b}", "refresh=12", "bump=v:{a}"});
	EXPECT_EQ(spec.refresh_id, 12u);
	/* slots: team 0, b 1, a 2 */
	EXPECT_EQ(spec.refresh_slots, (std::vector<size_t>{1, 2}));
	EXPECT_FALSE(spec.refreshes(spec.targets[0]));
	EXPECT_TRUE(spec.refreshes(spec.targets[1]));
	EXPECT_FALSE(spec.refreshes(spec.targets[2]));
	EXPECT_EQ(TriggerSpec::parse({"u:{id}"}).refresh_id, 0u) << "without the option: keys are removed";
}

TEST(TemplateParse, RefreshOptionRefusals)
{
	EXPECT_NE(error_of({"a:{id}", "b:{id}", "refresh=1"}).find("exactly one key template"), std::string::npos);
	EXPECT_NE(error_of({"tag=t:{id}", "refresh=1"}).find("needs a key template"), std::string::npos);
	EXPECT_NE(error_of({"pattern=a:*", "refresh=1"}).find("needs a key template"), std::string::npos);
	EXPECT_NE(error_of({"a:{id}", "refresh=1", "refresh=2"}).find("more than once"), std::string::npos);
	for (const char *bad : {"refresh=", "refresh=0", "refresh=-1", "refresh=1x", "refresh=2147483648",
							"refresh=99999999999"})
		EXPECT_NE(error_of({"a:{id}", bad}).find("invalid refresh"), std::string::npos) << bad;
	EXPECT_EQ(TriggerSpec::parse({"a:{id}", "refresh=2147483647"}).refresh_id, 2147483647u);
}

TEST(TemplateParse, EqualsSignsInKeys)
{
	/* Only a [a-z_] word before '=' is a kind. */
	TriggerSpec spec = TriggerSpec::parse({"user?id={id}", "a.b=c", "key=filter=on"});
	EXPECT_EQ(render(spec, 0, {"7"})->key, "user?id=7");
	EXPECT_EQ(render(spec, 1, {"7"})->key, "a.b=c");
	EXPECT_EQ(render(spec, 2, {"7"})->key, "filter=on");
	std::string err = error_of({"filter=on"});
	EXPECT_NE(err.find("unknown target kind \"filter\" in \"filter=on\""), std::string::npos) << err;
	EXPECT_NE(err.find("key=filter=on"), std::string::npos) << err;
}

TEST(TemplateParse, ColumnNames)
{
	TriggerSpec spec = TriggerSpec::parse({"{ID}:{\"Mixed Case\"}:{\"say \"\"hi\"\"\"}:{_x$1}:{caf\xc3\xa9}"});
	EXPECT_EQ(spec.columns, (std::vector<std::string>{"id", "Mixed Case", "say \"hi\"", "_x$1", "caf\xc3\xa9"}));
	EXPECT_EQ(render(spec, 0, {"1", "2", "3", "4", "5"})->key, "1:2:3:4:5");
}

TEST(TemplateParse, LiteralBraces)
{
	TriggerSpec spec = TriggerSpec::parse({"{{x}}:{id}:}}{{"});
	EXPECT_EQ(render(spec, 0, {"9"})->key, "{x}:9:}{");
}

TEST(TemplateParse, MalformedTemplates)
{
	struct {
		const char *arg;
		const char *expected;
	} cases[] = {
		{"user:{id", "malformed template \"user:{id\": unterminated column reference"},
		{"user:{}", "empty column reference {}"},
		{"user:}", "unmatched }"},
		{"user:{\"\"}", "empty column name"},
		{"user:{\"abc", "unterminated quoted column name"},
		{"user:{\"a\"b}", "invalid character in column reference"},
		{"user:{a b}", "invalid character in column reference"},
		{"user:{1st}", "must start with a letter"},
		{"", "empty target \"\""},
		{"key=", "empty target \"key=\""},
		{"tag=", "empty target \"tag=\""},
	};
	for (const auto &c : cases) {
		std::string err = error_of({c.arg});
		EXPECT_NE(err.find(c.expected), std::string::npos) << c.arg << " -> " << err;
	}
	EXPECT_NE(error_of({}).find("no targets given"), std::string::npos);
	EXPECT_NE(error_of({"priority=immediate"}).find("no targets given"), std::string::npos);
}

TEST(TemplateRender, NullSkipsTheTarget)
{
	TriggerSpec spec = TriggerSpec::parse({"a:{x}:{y}", "b:{x}"});
	EXPECT_FALSE(render(spec, 0, {"1", std::nullopt}).has_value());
	EXPECT_EQ(render(spec, 1, {"1", std::nullopt})->key, "b:1");
}

TEST(TemplateRender, PrefixesApply)
{
	TriggerSpec spec = TriggerSpec::parse({"user:{id}", "tag=team:{id}", "bump=v:{id}"});
	KeyPrefixes p{"app:", "t:"};
	EXPECT_EQ(render(spec, 0, {"1"}, p)->key, "app:user:1");
	std::optional<Target> tag = render(spec, 1, {"1"}, p);
	EXPECT_EQ(tag->key, "app:t:team:1");
	EXPECT_EQ(tag->tag_prefix_len, 6u);
	EXPECT_EQ(render(spec, 2, {"1"}, p)->key, "app:v:1");
	EXPECT_EQ(render(spec, 0, {"1"}, p)->tag_prefix_len, 0u);
}

TEST(TemplateRender, GlobValuesAreEscapedInPatterns)
{
	TriggerSpec spec = TriggerSpec::parse({"pattern=search:*:{name}", "key:{name}"});
	KeyPrefixes p{"a*b:", "tag:"};
	/* a name "*" must not widen the pattern */
	EXPECT_EQ(render(spec, 0, {"*"}, p)->key, "a\\*b:search:*:\\*");
	EXPECT_EQ(render(spec, 0, {"x?[y]\\"}, p)->key, "a\\*b:search:*:x\\?\\[y\\]\\\\");
	/* plain keys are never escaped */
	EXPECT_EQ(render(spec, 1, {"*"}, p)->key, "a*b:key:*");
}

TEST(TemplateRender, OversizeKeysAreErrors)
{
	TriggerSpec spec = TriggerSpec::parse({"k:{v}"});
	std::string big(kMaxKeyLength, 'x');
	try {
		render(spec, 0, {big});
		FAIL() << "expected TargetError";
	} catch (const TargetError &e) {
		EXPECT_NE(std::string(e.what()).find("8194 bytes, more than the limit of 8192"), std::string::npos)
			<< e.what();
	}
	EXPECT_EQ(render(spec, 0, {std::string(kMaxKeyLength - 2, 'x')})->key.size(), kMaxKeyLength);
	/* an empty rendering is refused too */
	TriggerSpec only = TriggerSpec::parse({"{v}"});
	EXPECT_THROW(render(only, 0, {""}), TargetError);
}

TEST(TemplateRender, BinaryValuesPassThrough)
{
	TriggerSpec spec = TriggerSpec::parse({"k:{v}"});
	std::string odd("a b\r\n\"'\0z", 9);
	EXPECT_EQ(render(spec, 0, {std::string_view(odd)})->key, "k:" + odd);
}

TEST(TemplateTruncate, ColumnsBecomeWildcards)
{
	TriggerSpec spec = TriggerSpec::parse({"user:{id}", "tag=team:{team_id}", "pattern=s:*:{id}",
										   "bump=v", "bump=user:{id}:v", "all:users", "lit*[{id}]"});
	KeyPrefixes p{"app?", "tag:"};
	std::vector<std::pair<std::string, std::string>> expected = {
		{"pattern", "app\\?user:*"},
		{"tag_pattern", "app\\?tag:team:*"},
		{"pattern", "app\\?s:*:*"},
		{"bump", "app?v"},
		{"bump_pattern", "app\\?user:*:v"},
		{"key", "app?all:users"},
		{"pattern", "app\\?lit\\*\\[*\\]"},
	};
	for (size_t i = 0; i < expected.size(); i++) {
		Target t = spec.targets[i].render_truncate(p, false);
		EXPECT_EQ(target_kind_name(t.kind, t.glob), expected[i].first) << i;
		EXPECT_EQ(t.key, expected[i].second) << i;
	}
	EXPECT_EQ(spec.targets[1].render_truncate(p, false).tag_prefix_len, 8u);
}

TEST(ManualTargets, VerbatimWithPrefixes)
{
	KeyPrefixes p{"p*", "t:"};
	EXPECT_EQ(make_target(TargetKind::Key, false, "k*", p, false).key, "p*k*");
	EXPECT_EQ(make_target(TargetKind::Key, true, "k*", p, false).key, "p\\*k*");
	Target tag = make_target(TargetKind::Tag, false, "team", p, false);
	EXPECT_EQ(tag.key, "p*t:team");
	EXPECT_EQ(tag.tag_prefix_len, 4u);
	EXPECT_THROW(make_target(TargetKind::Key, false, "", p, false), TargetError);
	EXPECT_THROW(make_target(TargetKind::Key, false, std::string(kMaxKeyLength, 'k'), p, false), TargetError);
}

TEST(GlobEscape, EscapesExactlyTheGlobCharacters)
{
	EXPECT_EQ(glob_escape("a*b?c[d]e\\f-g^h"), "a\\*b\\?c\\[d\\]e\\\\f-g^h");
	EXPECT_EQ(glob_escape(""), "");
}

TEST(ClosestName, SuggestsLikePostgres)
{
	std::vector<std::string> columns = {"id", "team_id", "email", "name"};
	EXPECT_EQ(closest_name("team", columns), "team_id");
	EXPECT_EQ(closest_name("emial", columns), "email");
	EXPECT_EQ(closest_name("nmae", columns), "name");
	EXPECT_EQ(closest_name("zzzzzz", columns), "");
	EXPECT_EQ(closest_name("x", {}), "");
}
