# The course's network (unless an existing one is given) and its security group: SSH from the
# operator only, HTTP(S) from anywhere, Docker Swarm's ports only between the course's hosts.

locals {
  create_network = var.network_name == ""
  swarm_ports = {
    "tcp-2377" = { protocol = "tcp", port = 2377 }
    "tcp-7946" = { protocol = "tcp", port = 7946 }
    "udp-7946" = { protocol = "udp", port = 7946 }
    "udp-4789" = { protocol = "udp", port = 4789 }
  }
  web = {
    "http-v4"  = { port = 80, ethertype = "IPv4", prefix = "0.0.0.0/0" }
    "https-v4" = { port = 443, ethertype = "IPv4", prefix = "0.0.0.0/0" }
    "http-v6"  = { port = 80, ethertype = "IPv6", prefix = "::/0" }
    "https-v6" = { port = 443, ethertype = "IPv6", prefix = "::/0" }
  }
}

data "openstack_networking_network_v2" "external" {
  name     = var.external_network
  external = true
}

data "openstack_networking_network_v2" "existing" {
  count = local.create_network ? 0 : 1
  name  = var.network_name
}

resource "openstack_networking_network_v2" "course" {
  count       = local.create_network ? 1 : 0
  name        = var.name
  description = var.tag
  tags        = [var.tag]
}

resource "openstack_networking_subnet_v2" "course" {
  count           = local.create_network ? 1 : 0
  name            = var.name
  description     = var.tag
  network_id      = openstack_networking_network_v2.course[0].id
  cidr            = var.subnet_cidr
  ip_version      = 4
  dns_nameservers = var.dns_nameservers
  tags            = [var.tag]
}

resource "openstack_networking_router_v2" "course" {
  count               = local.create_network ? 1 : 0
  name                = var.name
  description         = var.tag
  external_network_id = data.openstack_networking_network_v2.external.id
  tags                = [var.tag]
}

resource "openstack_networking_router_interface_v2" "course" {
  count     = local.create_network ? 1 : 0
  router_id = openstack_networking_router_v2.course[0].id
  subnet_id = openstack_networking_subnet_v2.course[0].id
}

resource "openstack_networking_secgroup_v2" "course" {
  name        = var.name
  description = var.tag
  tags        = [var.tag]
}

resource "openstack_networking_secgroup_rule_v2" "ssh" {
  security_group_id = openstack_networking_secgroup_v2.course.id
  direction         = "ingress"
  ethertype         = strcontains(var.operator_cidr, ":") ? "IPv6" : "IPv4"
  protocol          = "tcp"
  port_range_min    = 22
  port_range_max    = 22
  remote_ip_prefix  = var.operator_cidr
}

resource "openstack_networking_secgroup_rule_v2" "web" {
  for_each          = local.web
  security_group_id = openstack_networking_secgroup_v2.course.id
  direction         = "ingress"
  ethertype         = each.value.ethertype
  protocol          = "tcp"
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_ip_prefix  = each.value.prefix
}

resource "openstack_networking_secgroup_rule_v2" "swarm" {
  for_each          = local.swarm_ports
  security_group_id = openstack_networking_secgroup_v2.course.id
  direction         = "ingress"
  ethertype         = "IPv4"
  protocol          = each.value.protocol
  port_range_min    = each.value.port
  port_range_max    = each.value.port
  remote_group_id   = openstack_networking_secgroup_v2.course.id
}
