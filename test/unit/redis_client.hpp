/*
 * redis_client.hpp — a blocking Redis client for tests, built on the
 * product's non-blocking Connection (so every test that talks to Redis
 * exercises it too). poll() stands in for the worker's WaitEventSet.
 */
#pragma once

#include <poll.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/redis/connection.hpp"
#include "core/redis/url.hpp"

namespace cachebust {

class RedisError : public std::runtime_error
{
  public:
	using std::runtime_error::runtime_error;
};

struct RedisTimeouts {
	int connect_ms = 1000;
	int command_ms = 2000;
};

/* Waits on c until done() or the connection closes; false on closing. */
template <typename Done>
bool
drive(Connection &c, Done done)
{
	while (!done()) {
		if (c.closed())
			return false;
		pollfd p{c.fd(), 0, 0};
		if (c.want_read())
			p.events |= POLLIN;
		if (c.want_write())
			p.events |= POLLOUT;
		int64_t deadline = c.deadline_us();
		int timeout = deadline == 0 ? 100 : static_cast<int>((deadline - monotonic_us()) / 1000) + 1;
		if (timeout < 0)
			timeout = 0;
		if (timeout > 100)
			timeout = 100;
		int n = poll(&p, 1, timeout);
		if (n > 0)
			c.on_io((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0, (p.revents & POLLOUT) != 0);
		c.on_timer();
	}
	return true;
}

inline ConnectionSettings
settings_for(const RedisUrl &url, const RedisTimeouts &timeouts)
{
	ConnectionSettings s;
	if (url.transport == RedisUrl::Transport::Unix) {
		s.endpoint.unix_socket = true;
		s.endpoint.path = url.socket_path;
	} else {
		s.endpoint.host = url.hosts.at(0).host;
		s.endpoint.port = url.hosts.at(0).port;
	}
	s.user = url.user;
	s.password = url.password;
	s.db = url.db;
	s.connect_timeout_ms = timeouts.connect_ms;
	s.command_timeout_ms = timeouts.command_ms;
	return s;
}

class RedisClient
{
  public:
	void connect(const RedisUrl &url, const RedisTimeouts &timeouts = {})
	{
		connect(settings_for(url, timeouts));
	}

	void connect(ConnectionSettings settings)
	{
		conn_ = std::make_unique<Connection>(std::move(settings));
		conn_->open();
		if (!drive(*conn_, [&] { return conn_->ready(); })) {
			std::string why = conn_->error();
			conn_.reset();
			throw RedisError("cannot connect: " + why);
		}
	}

	bool connected() const { return conn_ && conn_->ready(); }
	void disconnect() { conn_.reset(); }
	int fd() const { return conn_ ? conn_->fd() : -1; }
	Connection &connection() { return *conn_; }

	/* Replies in order; throws RedisError if the connection fails. */
	std::vector<Reply> pipeline(const std::vector<Command> &commands)
	{
		if (!conn_)
			throw RedisError("not connected to Redis");
		std::vector<Reply> replies(commands.size());
		size_t done = 0;
		for (size_t i = 0; i < commands.size(); i++)
			conn_->send(commands[i], [&replies, &done, i](Reply &r) {
				replies[i] = std::move(r);
				done++;
			});
		conn_->flush();
		bool ok = drive(*conn_, [&] { return done == commands.size(); });
		if (!ok || conn_->closed()) {
			std::string why = conn_->error();
			conn_.reset();
			throw RedisError(why);
		}
		return replies;
	}

	Reply command(const Command &cmd) { return pipeline({cmd}).front(); }

  private:
	std::unique_ptr<Connection> conn_;
};

} // namespace cachebust
