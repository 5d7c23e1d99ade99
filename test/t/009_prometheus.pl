# contrib/prometheus (issue 16, item 6): prometheus-postgres-exporter with
# cachebust_queries.yaml exports cachebust.stats, every column the test
# knows of, with the values and types the SQL shows.
use strict;
use warnings;

use Cwd ();
use File::Spec;
use FindBin;
use lib $FindBin::Bin;
use CachebustTest;
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Debian's name first, then upstream's.
my ($exporter) = grep { -x } map {
	my $dir = $_;
	map { File::Spec->catfile($dir, $_) } qw(prometheus-postgres-exporter postgres_exporter)
} File::Spec->path;
plan skip_all => 'prometheus-postgres-exporter is not installed' unless $exporter;

my $queries = Cwd::abs_path("$FindBin::Bin/../../contrib/prometheus/cachebust_queries.yaml");
ok(-f $queries, 'contrib/prometheus/cachebust_queries.yaml exists');

# ---- what each column of cachebust.stats becomes: [SQL expression, metric, type]
my @counters = qw(transactions_enqueued targets_enqueued targets_coalesced targets_delivered
  targets_failed tag_members_skipped redis_commands redis_errors retries reconnects failovers
  overflows fallbacks fallbacks_refused second_sends standby_timeouts refreshes refresh_failures
  refreshes_coalesced);
my @series = (
	(map { [ $_, "cachebust_${_}_total", 'counter' ] } @counters),
	[ 'journal_replayed_batches', 'cachebust_journal_replayed_batches_total', 'counter' ],
	[ 'journal_replay_ms / 1000.0', 'cachebust_journal_replay_seconds_total', 'counter' ],
	[ 'slot_lag_bytes', 'cachebust_journal_slot_lag_bytes', 'gauge' ],
	[ q{delivered_lsn - '0/0'::pg_lsn}, 'cachebust_delivered_lsn', 'gauge' ],
	[ 'delivery_lag_bytes', 'cachebust_delivery_lag_bytes', 'gauge' ],
	[ 'queue_bytes_used', 'cachebust_queue_used_bytes', 'gauge' ],
	[ 'queue_size', 'cachebust_queue_size_bytes', 'gauge' ],
	[ 'queue_high_water', 'cachebust_queue_high_water_bytes', 'gauge' ],
	[ 'pending_targets', 'cachebust_pending_targets', 'gauge' ],
	[ 'uncovered_batches', 'cachebust_uncovered_batches', 'gauge' ],
	[ 'enqueued_seq', 'cachebust_enqueued_seq', 'gauge' ],
	[ 'delivered_seq', 'cachebust_delivered_seq', 'gauge' ],
	[ 'connected::int', 'cachebust_connected', 'gauge' ],
	[ 'extract(epoch FROM last_delivery)', 'cachebust_last_delivery_timestamp_seconds', 'gauge' ],
	[ 'extract(epoch FROM last_error_time)', 'cachebust_last_error_timestamp_seconds', 'gauge' ],
	[ 'extract(epoch FROM stats_reset)', 'cachebust_stats_reset_timestamp_seconds', 'gauge' ],
);
# Quantiles: milliseconds in SQL, seconds (divided here) under a quantile label; absent while NULL.
my %quantiles = (
	latency => 'cachebust_delivery_latency_seconds',
	standby_lag => 'cachebust_standby_lag_seconds',
	refresh => 'cachebust_refresh_latency_seconds',
);
my %quantile_of = (p50 => '0.5', p99 => '0.99', max => '1');
# Exported otherwise: standbys_absent as one labelled series per name.
# Left out on purpose: last_error (free text; see contrib/prometheus/README.md).
my %elsewhere = (standbys_absent => 1, last_error => 1);

# ---- a node, a role with no grants of its own, some deliveries
my $redis = start_redis();
my $node = cachebust_node('prometheus', $redis);
$node->safe_psql('postgres', q{
CREATE ROLE metrics LOGIN;
CREATE TABLE users (id int PRIMARY KEY, team_id int, name text);
SELECT cachebust.watch('users', keys => ARRAY['user:{id}'], tags => ARRAY['team:{team_id}']);
INSERT INTO users SELECT g, g % 3, 'u' || g FROM generate_series(1, 20) g;
});
$redis->cmd('SET', "user:$_", 'cached') for 1 .. 20;
for my $i (1 .. 5)
{
	is($node->safe_psql('postgres',
		"UPDATE users SET name = 'n$i' WHERE id <= $i * 4; SELECT cachebust.wait_for_delivery(5000)"),
		't', "batch $i delivered");
}
is($redis->exists_key('user:20'), 0, 'keys were invalidated');
ok(wait_all_delivered($node), 'every commit delivered');

# Every column is accounted for: a new one fails here until the yaml exports it.
my @columns = split /\n/, $node->safe_psql('postgres',
	q{SELECT attname FROM pg_attribute WHERE attrelid = 'cachebust.stats'::regclass AND attnum > 0 ORDER BY attnum});
my %known = (%elsewhere, map { my $c = $_->[0]; $c =~ s/^extract\(epoch FROM (\w+)\)$/$1/; $c =~ s/::int$//; $c =~ s/ \/ 1000\.0$//; $c =~ s/ - '0\/0'::pg_lsn$//; ($c => 1) } @series);
for my $kind (keys %quantiles) { $known{"${kind}_${_}_ms"} = 1 for keys %quantile_of; }
is_deeply([ grep { !$known{$_} } @columns ], [], 'every column of cachebust.stats is exported or left out on purpose');

# ---- the exporter, as the plain role, over the node's Unix socket
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $log = "$PostgreSQL::Test::Utils::log_path/009_prometheus_exporter.log";
my $harness;
{
	local $ENV{DATA_SOURCE_NAME} =
	  'host=' . $node->host . ' port=' . $node->port . ' user=metrics dbname=postgres sslmode=disable';
	# Only the exporter's own health metrics besides ours: no settings, no collectors.
	$harness = IPC::Run::start(
		[ $exporter, "--web.listen-address=127.0.0.1:$port", "--extend.query-path=$queries",
			'--disable-default-metrics', '--disable-settings-metrics',
			'--no-collector.database', '--no-collector.bgwriter' ],
		'<', \undef, '>>', $log, '2>&1');
}
END { $harness->kill_kill(grace => 5) if $harness && $harness->pumpable; }

my $http = HTTP::Tiny->new(timeout => 5);
my $url = "http://127.0.0.1:$port/metrics";

# One scrape: ({metric => {labels => value}}, {metric => type}); the server label is dropped.
sub scrape
{
	my $response = $http->get($url);
	return unless $response->{success};
	my (%values, %types);
	for my $line (split /\n/, $response->{content})
	{
		if ($line =~ /^# TYPE (\S+) (\S+)$/)
		{
			$types{$1} = $2;
		}
		elsif ($line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/)
		{
			my ($name, $labels, $value) = ($1, $2 // '', $3);
			my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
			delete $l{server};
			$values{$name}{ join(',', map { "$_=$l{$_}" } sort keys %l) } = $value;
		}
	}
	return (\%values, \%types);
}

my ($values, $types);
ok(wait_until(sub {
	die "the exporter exited; see $log\n" unless $harness->pumpable;
	($values, $types) = scrape();
	return $values && exists $values->{cachebust_connected};
}, 30), "the exporter answers on 127.0.0.1:$port with cachebust series");
my ($loaded) = grep { /^filename=\Q$queries\E(,|$)/ } keys %{ $values->{pg_exporter_user_queries_load_error} };
is($loaded && $values->{pg_exporter_user_queries_load_error}{$loaded}, '0', 'the queries file loads');

# The stats as the test expects them in a scrape: {metric => {labels => value}}.
sub expected
{
	my @exprs = map { "$_->[0]" } @series;
	for my $kind (sort keys %quantiles)
	{
		push @exprs, map { "${kind}_${_}_ms" } sort keys %quantile_of;
	}
	push @exprs, 'standbys_absent';
	my @row = split /\|/, $node->safe_psql('postgres', 'SELECT ' . join(', ', @exprs) . ' FROM cachebust.stats'), -1;
	my %want;
	for my $s (@series)
	{
		my $v = shift @row;
		$want{ $s->[1] }{''} = $v eq '' ? 'NaN' : $v;
	}
	for my $kind (sort keys %quantiles)
	{
		for my $q (sort keys %quantile_of)
		{
			my $ms = shift @row;
			$want{ $quantiles{$kind} }{"quantile=$quantile_of{$q}"} = $ms / 1000 if $ms ne '';
		}
	}
	my $absent = shift @row;
	$want{cachebust_standbys_absent}{"standby=$_"} = 1 for grep { $_ ne '' } split /,/, $absent;
	return \%want;
}

# Where a scrape differs from the stats: numbers compared as doubles (NaN
# as text), every cachebust series present and no other.
sub differences
{
	my ($got, $want) = @_;
	my (%got, %want, @diff);
	for my $metric (grep { /^cachebust_/ } keys %$got)
	{
		$got{"$metric\{$_\}"} = $got->{$metric}{$_} for keys %{ $got->{$metric} };
	}
	for my $metric (keys %$want)
	{
		$want{"$metric\{$_\}"} = $want->{$metric}{$_} for keys %{ $want->{$metric} };
	}
	for my $series (sort(keys %{ { %got, %want } }))
	{
		my ($g, $w) = ($got{$series} // 'absent', $want{$series} // 'absent');
		my $same = ($g =~ /^(NaN|absent)$/ || $w =~ /^(NaN|absent)$/) ? $g eq $w : $g == $w;
		push @diff, "$series: scraped $g, stats $w" unless $same;
	}
	return @diff;
}

# Stats that read the same before and after a scrape are settled; the
# scrape must show them.
sub scrape_matches_stats
{
	my ($name) = @_;
	my ($got, @diff);
	wait_until(sub {
		my $before = expected();
		($got, $types) = scrape() or return 0;
		my $want = expected();
		return 0 if differences($want, $before);
		@diff = differences($got, $want);
		return !@diff;
	}, 10);
	is_deeply(\@diff, [], "$name: the scrape shows what cachebust.stats shows");
	is($got->{pg_exporter_last_scrape_error}{''}, '0', "$name: no query failed");
	return $got;
}

my $got = scrape_matches_stats('after deliveries');
cmp_ok($got->{cachebust_targets_delivered_total}{''}, '>', 0, 'targets_delivered_total counts the deliveries');
is($got->{cachebust_connected}{''}, 1, 'connected is 1');
ok(exists $got->{cachebust_delivery_latency_seconds}{$_}, "delivery latency quantile $_")
  for map { "quantile=$_" } qw(0.5 0.99 1);
ok(!exists $got->{cachebust_standby_lag_seconds}, 'no standby lag series without second sends');
ok(!exists $got->{cachebust_standbys_absent}, 'no absent standby series without standby_names');

# ---- types: counters and gauges as the README says
is($types->{"cachebust_${_}_total"}, 'counter', "cachebust_${_}_total is a counter") for @counters;
is($types->{ $_->[1] }, 'gauge', "$_->[1] is a gauge") for grep { $_->[2] eq 'gauge' } @series;
is($types->{cachebust_delivery_latency_seconds}, 'gauge', 'cachebust_delivery_latency_seconds is a gauge');

# ---- second sends: with '*' and no standby streaming, every window is
# replayed at once, so the standby lag quantiles appear
reload_settings($node, q{ALTER SYSTEM SET cachebust.standby_names = '*'});
is($node->safe_psql('postgres', q{UPDATE users SET name = 's' WHERE id = 2; SELECT cachebust.wait_for_delivery(5000)}),
	't', "delivered with standby_names = '*'");
ok(wait_until(sub { stat_value($node, 'second_sends > 0 AND standby_lag_max_ms IS NOT NULL') eq 't' }),
	'a second send went out');
$got = scrape_matches_stats('after a second send');
cmp_ok($got->{cachebust_second_sends_total}{''}, '>', 0, 'second_sends_total counts it');
ok(exists $got->{cachebust_standby_lag_seconds}{$_}, "standby lag quantile $_") for map { "quantile=$_" } qw(0.5 0.99 1);
is($types->{cachebust_standby_lag_seconds}, 'gauge', 'cachebust_standby_lag_seconds is a gauge');

# ---- a standby second sends wait for that is not streaming: a labelled series
reload_settings($node, q{ALTER SYSTEM SET cachebust.standby_names = 'ghost'},
	q{ALTER SYSTEM SET cachebust.standby_max_wait_ms = '1h'});
# (wait_for_delivery waits for the second send too, so not here.)
$node->safe_psql('postgres', q{UPDATE users SET name = 'g' WHERE id = 1});
ok(wait_until(sub { stat_value($node, 'standbys_absent') eq 'ghost' }), 'stats lists the absent standby');
$got = scrape_matches_stats('with an absent standby');
is($got->{cachebust_standbys_absent}{'standby=ghost'}, 1, 'cachebust_standbys_absent{standby="ghost"} is 1');
is($types->{cachebust_standbys_absent}, 'gauge', 'cachebust_standbys_absent is a gauge');

# ---- reset_stats(): counters go back to zero, as Prometheus counters may
$node->safe_psql('postgres', 'SELECT cachebust.reset_stats()');
$got = scrape_matches_stats('after reset_stats()');
is($got->{cachebust_targets_delivered_total}{''}, 0, 'targets_delivered_total is 0 after a reset');
ok(!exists $got->{cachebust_delivery_latency_seconds}, 'no latency quantiles until the next delivery');

$harness->kill_kill(grace => 5);
ok(!$harness->pumpable, 'the exporter stopped');
$node->stop;
$redis->stop;
done_testing();
