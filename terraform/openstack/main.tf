# One course's hosts on OpenStack: network and security group, servers, the hub's floating IP
# and, with a DNS zone, its A record. Every resource is tagged hubfleet-course=<course>.

provider "openstack" {
  cloud = var.cloud != "" ? var.cloud : null
}

locals {
  tag  = "hubfleet-course=${var.course_name}"
  name = "hubfleet-${var.course_name}"
}

module "network" {
  source = "./modules/network"

  name             = local.name
  tag              = local.tag
  external_network = var.external_network
  network_name     = var.network_name
  subnet_cidr      = var.subnet_cidr
  dns_nameservers  = var.dns_nameservers
  operator_cidr    = var.operator_cidr
}

module "compute" {
  source = "./modules/compute"

  name             = local.name
  tag              = local.tag
  course_name      = var.course_name
  image_name       = var.image_name
  ssh_public_key   = var.ssh_public_key
  ssh_user         = var.ssh_user
  hosts            = var.hosts
  network_id       = module.network.network_id
  subnet_ready     = module.network.subnet_ready
  secgroup_id      = module.network.secgroup_id
  external_network = var.external_network
}

data "openstack_dns_zone_v2" "course" {
  count = var.dns_zone != "" && var.dns_record != "" ? 1 : 0
  name  = var.dns_zone
}

resource "openstack_dns_recordset_v2" "hub" {
  count       = length(data.openstack_dns_zone_v2.course)
  zone_id     = data.openstack_dns_zone_v2.course[0].id
  name        = var.dns_record
  type        = "A"
  ttl         = 300
  records     = [module.compute.floating_ip]
  description = local.tag
}
