"""Clients of the services the bundle watches and repairs: RabbitMQ, MySQL / MariaDB and Galera, OpenStack, TLS, and the coordination backends."""
